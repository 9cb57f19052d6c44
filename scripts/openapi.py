"""Write the contract documents, generated from the code:

* functions/submit/openapi.json, the HTTP API's OpenAPI document: the documentation resolver
  (scripts/api_contract.py: every route, its parameters, request and response models) plus one
  input schema per model from the catalog;
* events/pixverse-job-event.schema.json, the JSON Schema of the CloudEvents the stack publishes
  (its ``data`` is the job as the API's Job model describes it).

    python scripts/openapi.py            # rewrite both
    python scripts/openapi.py --check    # exit 1 if a committed document is stale
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "functions" / "submit" / "openapi.json"
EVENT_SCHEMA = ROOT / "events" / "pixverse-job-event.schema.json"

# The handler modules read their settings at import; the document needs none of them.
PLACEHOLDER_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "JOBS_TABLE": "openapi",
    "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
    "PIXAZO_API_KEY_SECRET": "openapi",
    "WEBHOOK_SECRET_ARN": "openapi",
    "COPY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/openapi",
    "SUBMIT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/openapi-submit",
    "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:openapi",
    "EVENT_BUS_NAME": "openapi",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "UPLOAD_BUCKET": "openapi-media",
}


@contextlib.contextmanager
def _placeholder_env() -> Iterator[None]:
    """PLACEHOLDER_ENV for the unset names while a module is imported, then the environment as it
    was: left in place, a gateway URL here once pointed a local stack started later in the same
    test process at the real gateway."""
    added = [name for name in PLACEHOLDER_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = PLACEHOLDER_ENV[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _load(function_dir: str) -> ModuleType:
    code = ROOT / "functions" / function_dir
    sys.path.insert(0, str(code))
    try:
        spec = importlib.util.spec_from_file_location(f"_openapi_{function_dir}", code / "app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        with _placeholder_env():
            spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(code))
    return module


def _contract() -> ModuleType:
    """scripts/api_contract.py (the submit routes' shapes, for the documents only)."""
    module = sys.modules.get("api_contract")
    if module is None:
        spec = importlib.util.spec_from_file_location("api_contract", ROOT / "scripts" / "api_contract.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["api_contract"] = module  # pydantic resolves the models' annotations through it
        with _placeholder_env():
            spec.loader.exec_module(module)
    return module


def build_document() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "layers" / "shared" / "python"))
    from pixverse_jobs.catalog import MODELS

    contract = _contract()
    document: dict[str, Any] = json.loads(
        contract.doc_resolver().get_openapi_json_schema(
            title="pixverse-jobs",
            version="1.0.0",
            summary="PixVerse video generation jobs through the Pixazo gateway",
            description="Submit jobs, read them back, receive the gateway's callbacks. /jobs routes need SigV4 "
            "(AuthMode iam) or a JWT (AuthMode jwt); the webhook route is protected by its signed URL.",
        )
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    # The resolver documents a 422 for its own validation errors; this API answers them as 400.
    for operations in document["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            if operation.get("tags") in (["jobs"], ["uploads"]):
                operation["security"] = [{"sigv4": []}, {"jwt": []}]
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = {
        "sigv4": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "AWS SigV4 (service execute-api), when the stack's AuthMode is iam (the default)",
            "x-amazon-apigateway-authtype": "awsSigv4",
        },
        "jwt": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A token from JwtIssuer for JwtAudience, when the stack's AuthMode is jwt",
        },
    }
    for model_id, model in MODELS.items():
        schemas[f"{model_id}Input"] = model.input_json_schema()
    schemas["SubmitJobBody"]["oneOf"] = [
        {
            "properties": {
                "model": {"const": model_id},
                "input": {"$ref": f"#/components/schemas/{model_id}Input"},
            }
        }
        for model_id in MODELS
    ]
    return document


def build_event_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the pixverse.job.* CloudEvents, from the Job model and events.py."""
    build_document()  # sets up the environment and import paths
    from pixverse_jobs.events import JOB_CANCELLED, JOB_DELIVERED, JOB_FAILED, JOB_PROGRESS

    job = _contract().JobView.model_json_schema(ref_template="#/$defs/{model}")
    definitions = job.pop("$defs", {})
    definitions["Job"] = job
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/pixverse-jobs/events/pixverse-job-event.schema.json",
        "title": "pixverse-jobs event",
        "description": "A CloudEvents 1.0 document in the SNS message of the events topic. id is stable per job "
        "and type (per job and status for progress), so consumers deduplicate on it: a replay "
        "(POST /jobs/{job_id}/replay) sends the same event again, same id.",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"],
        "additionalProperties": False,
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"type": "string", "minLength": 1, "description": "urn:pixverse-jobs:<stack name>"},
            "type": {"enum": [JOB_DELIVERED, JOB_FAILED, JOB_CANCELLED, JOB_PROGRESS]},
            "subject": {"type": "string", "description": "the job id"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "data": {"$ref": "#/$defs/Job"},
        },
        "allOf": [
            {
                "if": {"properties": {"type": {"const": JOB_DELIVERED}}},
                "then": {"properties": {"data": {"properties": {"status": {"const": "DELIVERED"}}}}},
            },
            {
                "if": {"properties": {"type": {"const": JOB_FAILED}}},
                "then": {
                    "properties": {
                        "data": {
                            "properties": {"status": {"enum": ["SUBMIT_FAILED", "FAILED", "ERROR", "DELIVERY_FAILED"]}}
                        }
                    }
                },
            },
            {
                "if": {"properties": {"type": {"const": JOB_CANCELLED}}},
                "then": {
                    "properties": {
                        "data": {
                            "properties": {
                                "status": {"const": "CANCELLED"},
                                "error": {
                                    "type": "object",
                                    "properties": {"code": {"enum": ["cancelled", "deadline_exceeded"]}},
                                },
                            }
                        }
                    }
                },
            },
        ],
        "$defs": definitions,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed document is not current")
    args = parser.parse_args()
    documents = {OUTPUT: render(build_document()), EVENT_SCHEMA: render(build_event_schema())}
    stale = [path for path, text in documents.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run `make openapi` and commit it", file=sys.stderr)
        return 1 if stale else 0
    for path, text in documents.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
