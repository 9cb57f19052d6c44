"""Input that is valid JSON (or nearly) but that the record, the index or the parser cannot take:
each is a 400 naming what is wrong, never a 500. Found by the reliability suite's corpus."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pixverse_jobs.callbacks import parse_callback
from pixverse_jobs.errors import CallbackRejected, RequestRejected
from pixverse_jobs.http_errors import json_body_limits
from pixverse_jobs.jobs import decode_page_token, encode_page_token, parse_list_query, parse_submit_request

VALID = {"model": "pixverse-c1-text-to-video", "input": {"prompt": "A lighthouse"}}
OWNER = "arn:aws:iam::123456789012:user/a"


def _fields(body: Any) -> set[str]:
    with pytest.raises(RequestRejected) as refused:
        parse_submit_request(body)
    return {d.field for d in refused.value.details}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300, 10**40, 5e-200])
def test_number_dynamodb_cannot_store_is_refused_by_field(value: float) -> None:
    assert _fields({**VALID, "metadata": {"x": {"y": [value]}}}) == {"metadata.x.y[0]"}


def test_lone_surrogate_in_a_prompt_is_refused_by_field() -> None:
    assert _fields({**VALID, "input": {"prompt": "A \ud800 lighthouse"}}) == {"input.prompt"}


def test_storable_numbers_are_accepted() -> None:
    request = parse_submit_request({**VALID, "metadata": {"n": 10**37, "f": 1.5e125, "z": 0.0, "neg": -3}})

    assert request.metadata["n"] == 10**37


@pytest.mark.parametrize("limit", ["\u00b2", "\u0661\u0662", "\uff11"])
def test_non_ascii_digits_are_not_a_limit(limit: str) -> None:
    with pytest.raises(RequestRejected) as refused:
        parse_list_query({"limit": limit}, owner=OWNER)

    assert [d.field for d in refused.value.details] == ["limit"]


def test_crafted_page_token_with_an_oversized_key_is_not_ours() -> None:
    genuine = {
        "job_id": {"S": "job_" + "a" * 32},
        "owner": {"S": OWNER},
        "created_at": {"S": "2026-11-25T10:00:00.000Z"},
    }
    crafted = {**genuine, "job_id": {"S": "job_" + "a" * 3000}}

    assert decode_page_token(encode_page_token(genuine)) == genuine
    assert decode_page_token(encode_page_token(crafted)) is None


def test_deeply_nested_callback_is_refused_not_crashed() -> None:
    with pytest.raises(CallbackRejected):
        parse_callback(b'{"request_id": ' + b"[" * 5000 + b"]" * 5000 + b"}")


def _through_limits(body: bytes, *, base64_encoded: bool = False) -> dict[str, Any]:
    @json_body_limits(64 * 1024)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 202}

    raw = base64.b64encode(body).decode() if base64_encoded else body.decode("utf-8", "surrogateescape")
    return handler({"body": raw, "isBase64Encoded": base64_encoded, "headers": {}}, None)


def test_deeply_nested_body_is_400_before_the_resolver() -> None:
    answer = _through_limits(b'{"model": ' + b"[" * 5000 + b"]" * 5000 + b"}")

    assert answer["statusCode"] == 400
    assert "nested too deeply" in json.loads(answer["body"])["error"]["message"]


def test_body_that_is_not_utf8_is_400_before_the_resolver() -> None:
    answer = _through_limits(b'{"model": "\xff\xfe", "input": {}}', base64_encoded=True)

    assert answer["statusCode"] == 400
    assert "not valid JSON" in json.loads(answer["body"])["error"]["message"]


@pytest.mark.parametrize("base64_encoded", [False, True])
def test_body_with_a_byte_order_mark_is_400_before_the_resolver(base64_encoded: bool) -> None:
    # json.loads(bytes) accepts a UTF-8 BOM, but the resolver parses the text, which refuses it.
    answer = _through_limits(b"\xef\xbb\xbf" + json.dumps(VALID).encode(), base64_encoded=base64_encoded)

    assert answer["statusCode"] == 400
    assert "BOM" in json.loads(answer["body"])["error"]["message"]


def test_lone_surrogate_in_a_text_body_is_400_before_the_resolver() -> None:
    answer = _through_limits('{"model": "\ud800", "input": {}}'.encode("utf-8", "surrogatepass"))

    assert answer["statusCode"] == 400
    assert "not valid JSON" in json.loads(answer["body"])["error"]["message"]


def test_valid_body_reaches_the_handler() -> None:
    assert _through_limits(json.dumps(VALID).encode())["statusCode"] == 202
