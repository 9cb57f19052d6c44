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


@pytest.mark.parametrize("limit", ["1" * 4301, "9" * 100_000, "0" * 5000 + "1" * 4301])
def test_limit_past_pythons_integer_string_limit_is_a_400_naming_limit(limit: str) -> None:
    # int() refuses strings over 4,300 digits with a ValueError: that was a 500 (issue 13, 2.14).
    with pytest.raises(RequestRejected) as refused:
        parse_list_query({"limit": limit}, owner=OWNER)

    assert [d.field for d in refused.value.details] == ["limit"]
    assert len(refused.value.details[0].message) < 200  # the value is not echoed whole


@pytest.mark.parametrize(("raw", "limit"), [("1", 1), ("100", 100), ("007", 7), ("0" * 5000 + "50", 50)])
def test_limit_in_range_is_accepted_with_leading_zeros(raw: str, limit: int) -> None:
    assert parse_list_query({"limit": raw}, owner=OWNER).limit == limit


@pytest.mark.parametrize("raw", ["0", "101", "0" * 5000, "-1", "1.0", "1e2", " 5"])
def test_limit_outside_1_to_100_is_refused(raw: str) -> None:
    with pytest.raises(RequestRejected):
        parse_list_query({"limit": raw}, owner=OWNER)


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


def _nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def test_empty_status_filter_is_refused_not_ignored() -> None:
    # An empty status is not a status: before, it meant "no filter" and listed every job.
    with pytest.raises(RequestRejected) as refused:
        parse_list_query({"status": ""}, owner=OWNER)
    assert [d.field for d in refused.value.details] == ["status"]


@pytest.mark.parametrize("depth", [101, 600, 5000])
def test_body_nested_deeper_than_any_check_walks_is_400_before_the_resolver(depth: int) -> None:
    # 600 levels parse on any Python and used to reach the recursive checks; since Python 3.12 so do
    # 5000, which json.loads parses with its own C limit.
    body = json.dumps(VALID)[:-1] + ', "metadata": {"d": ' + "[" * (depth - 2) + "]" * (depth - 2) + "}}"
    answer = _through_limits(body.encode())

    assert answer["statusCode"] == 400
    assert "nested too deeply" in json.loads(answer["body"])["error"]["message"]


def test_body_at_the_nesting_limit_reaches_the_handler() -> None:
    assert _through_limits(json.dumps({**VALID, "metadata": _nested(99)}).encode())["statusCode"] == 202


@pytest.mark.parametrize("field", ["input", "metadata"])
def test_input_or_metadata_nested_deeper_than_dynamodb_stores_is_refused_by_field(field: str) -> None:
    # DynamoDB refuses an item nested over 32 levels (moto does not): that was a 500 after the write failed.
    body = {**VALID, field: {"prompt": "p", "deep": _nested(31)}}  # 32 levels: with the attribute, 33

    assert field in _fields(body)
    assert field not in _fields({**VALID, field: {"prompt": "p", "deep": _nested(30)}, "model": "unknown"})


def test_callback_nested_too_deeply_is_refused() -> None:
    body = {"request_id": "r", "status": "COMPLETED", "output": {"media_url": ["https://x.r2.dev/a.mp4"]}}
    with pytest.raises(CallbackRejected, match="nested too deeply"):
        parse_callback(json.dumps({**body, "extra": _nested(600)}))


def test_callback_text_with_a_lone_surrogate_is_refused_not_crashed() -> None:
    with pytest.raises(CallbackRejected, match="not valid JSON"):
        parse_callback('{"request_id": "\ud800", "status": "QUEUED"}')
