"""Powertools Logger and Metrics shared by the functions (service and namespace come from
POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE set by template.yaml)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
