"""Powertools Logger and Metrics shared by the functions (service and namespace come from
POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE set by template.yaml)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

logger = Logger()
metrics = Metrics()


def count_by(name: str, **dimensions: str) -> None:
    """Count one ``name`` under ``dimensions`` (plus the service and default dimensions).

    It goes out as its own EMF document: dimensions added to the shared ``metrics`` would attach
    to every other metric of the invocation (and, with metrics disabled, never be cleared).
    POWERTOOLS_METRICS_DISABLED is honoured here because ``single_metric`` ignores it, and a
    metric that cannot be written is logged, never raised: counting must not fail a request."""
    if is_metrics_disabled() or not metrics.namespace:
        return
    base = {"service": metrics.service} if metrics.service else {}
    try:
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=1,
            namespace=metrics.namespace,
            default_dimensions={**base, **metrics.default_dimensions, **dimensions},
        ):
            pass
    except Exception:
        logger.warning("metric not written", extra={"metric": name}, exc_info=True)
