"""The events' JSON Schema (events/pixverse-job-event.schema.json): the examples in events/ and
the events the code builds validate; a wrong one does not."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pixverse_jobs.events import JOB_CANCELLED, JOB_DELIVERED, JOB_FAILED, build_event, event_id, final_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXAMPLES = ("event_delivered", "event_failed", "event_cancelled", "event_progress")


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((EVENTS / "pixverse-job-event.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _example(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_event_matches_the_schema(validator: jsonschema.protocols.Validator, name: str) -> None:
    validator.validate(_example(name))


def test_example_ids_are_the_stable_ids_the_code_gives() -> None:
    delivered = _example("event_delivered")

    assert delivered["id"] == event_id(delivered["subject"], JOB_DELIVERED)


def test_cancelled_example_has_the_stable_id_and_fails_the_schema_when_not_cancelled(
    validator: jsonschema.protocols.Validator,
) -> None:
    cancelled = _example("event_cancelled")
    assert cancelled["id"] == event_id(cancelled["subject"], JOB_CANCELLED)

    wrong = copy.deepcopy(cancelled)
    wrong["data"]["status"] = "FAILED"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(wrong)
    wrong = copy.deepcopy(cancelled)
    wrong["data"]["error"]["code"] = "timed_out"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(wrong)


def test_final_event_of_a_cancelled_record_matches_the_schema(validator: jsonschema.protocols.Validator) -> None:
    # A job record as the store holds it (internal attributes, the deadline in epoch seconds).
    record = {
        **_example("event_cancelled")["data"],
        "owner": "arn:aws:iam::123456789012:user/app",
        "deadline_at": 1795609860,
        "cancelled_from": "QUEUED",
        "unfinished": "u#03",
    }

    event = final_event(record, source="urn:pixverse-jobs:test")

    validator.validate(event)
    assert event["type"] == JOB_CANCELLED and event["data"]["deadline_at"] == "2026-11-25T12:31:00.000Z"
    assert "owner" not in event["data"] and "cancelled_from" not in event["data"]


def test_event_built_by_the_code_matches_the_schema(validator: jsonschema.protocols.Validator) -> None:
    job = _example("event_failed")["data"]

    validator.validate(build_event(JOB_FAILED, job, source="urn:pixverse-jobs:test"))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda e: e["data"].update(status="FAILED"), "delivered event of a FAILED job"),
        (lambda e: e.pop("id"), "no id"),
        (lambda e: e.update(type="pixverse.job.done"), "unknown type"),
        (lambda e: e["data"].update(status="DONE"), "unknown status"),
        (lambda e: e["data"]["outputs"][0].pop("sha256"), "output without sha256"),
    ],
)
def test_wrong_event_fails_the_schema(validator: jsonschema.protocols.Validator, change: Any, path: str) -> None:
    event = copy.deepcopy(_example("event_delivered"))
    change(event)

    with pytest.raises(jsonschema.ValidationError):
        validator.validate(event)
