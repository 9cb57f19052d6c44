"""Test helpers that create AWS resources from template.yaml's own definitions (in moto)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent


@cache
def template_resources() -> dict[str, Any]:
    return dict(cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"])


def create_jobs_table(client: Any, name: str = "jobs") -> str:
    """The jobs table with the key schema, indexes and billing mode template.yaml gives it."""
    props = template_resources()["JobsTable"]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    client.create_table(**kwargs)
    return name
