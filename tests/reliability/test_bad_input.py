"""A bad-input corpus against every public route, on a stack of its own: malformed JSON, huge
bodies, wrong types in every field, injection strings (SQL, NoSQL, DynamoDB expressions, shell, path
traversal, CRLF, format strings, unicode controls, NUL, very long) in every field, path and query
parameter and header, and forged callbacks.

Each request must be answered 4xx, never 5xx, and change nothing: the table (every item, scanned),
the bucket, the gateway (no request sent) and the events topic stay as they were. Injection strings
in the free-text fields (prompt, negative_prompt, metadata, a printable Idempotency-Key) are valid
input: those must be accepted and kept verbatim, never interpreted."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import httpx
import pytest
from pixverse_jobs.signing import sign
from pixverse_jobs.store import RUN_LEASE_PREFIX
from pixverse_local.harness import TERMINAL, EventInbox, LocalClient, StackProcess
from reliability_support import (
    IMAGE_URL,
    ResultsBook,
    current_scale,
    local_stack,
    webhook_job_id,
)

SCALE = current_scale()
pytestmark = pytest.mark.timeout(SCALE.module_timeout)

INJECTIONS: Mapping[str, str] = {
    "sql": "' OR '1'='1' --",
    "sql_union": "x' UNION SELECT * FROM jobs; DROP TABLE jobs; --",
    "nosql_text": '{"$gt": ""}',
    "dynamodb_expression": "#status = :s0 OR attribute_exists(job_id)",
    "shell": "$(touch /tmp/pwned) `id` | cat /etc/passwd; rm -rf /",
    "traversal": "../../../../etc/passwd",
    "traversal_encoded": "..%2F..%2F..%2Fetc%2Fpasswd",
    "crlf": "x\r\nX-Injected: 1\r\n\r\n<html>",
    "format": "%s%s%n%x {0} {job_id!r} ${jndi:ldap://127.0.0.1/a}",
    "unicode": "\u202e\ufeff\U0001f4a5 \uff50\uff49\uff58",
    "nul": "a\x00b",
    "long": "A" * 20_000,
}
NOSQL_OBJECT: Mapping[str, Any] = {"$gt": ""}

V6_I2V = "pixverse-v6-image-to-video"
V6_I2V_INPUT: Mapping[str, Any] = {"prompt": "A lighthouse at dusk", "image_url": IMAGE_URL}
VALID_BODY: Mapping[str, Any] = {"model": V6_I2V, "input": V6_I2V_INPUT}


# ------------------------------------------------------------------------------------------ targets
@dataclass
class Targets:
    """What the corpus aims at: a delivered job, a job waiting for its callback (QUEUED, with a
    request_id), the webhook signing secret (to reach past the signature check)."""

    client: LocalClient
    api: httpx.Client
    caller: str
    delivered: str
    queued: str
    queued_request_id: str
    secret: str

    def sig(self, job_id: str) -> str:
        return sign(job_id, self.secret)


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, already percent-encoded
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent byte for byte on a socket (headers httpx refuses to send)


@dataclass(frozen=True)
class Case:
    id: str
    route: str
    build: Callable[[Targets], Request]
    bug: str | None = None  # a known product bug: the case is xfail(strict) with this reason


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _submit(body: Any, headers: Mapping[str, str] | None = None) -> Callable[[Targets], Request]:
    raw = body if isinstance(body, bytes) else _json(body)
    return lambda t: Request("POST", "/jobs", raw, {"Content-Type": "application/json", **(headers or {})})


def _with(path: str, value: Any) -> dict[str, Any]:
    """The valid body with ``value`` at ``path`` (``model``, ``input.seed``, ...)."""
    body: dict[str, Any] = json.loads(json.dumps(VALID_BODY))
    node = body
    *parents, last = path.split(".")
    for name in parents:
        node = node[name]
    node[last] = value
    return body


def _callback(t: Targets, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": t.queued_request_id,
        "status": "COMPLETED",
        "model_id": V6_I2V,
        "error": None,
        "output": {"media_url": ["https://media.example.com/v.mp4"], "media_type": "video/mp4"},
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:01.000Z",
        "completed_at": "2026-01-01T00:00:01.000Z",
    }
    body.update(overrides)
    return body


def _webhook(
    job: Callable[[Targets], str],
    sig: Callable[[Targets], str | None],
    body: Callable[[Targets], bytes],
    content_type: str = "application/json",
) -> Callable[[Targets], Request]:
    def build(t: Targets) -> Request:
        job_id = job(t)
        signature = sig(t)
        query = "" if signature is None else f"?sig={quote(signature, safe='')}"
        return Request(
            "POST", f"/webhooks/pixazo/{quote(job_id, safe='')}{query}", body(t), {"Content-Type": content_type}
        )

    return build


def _queued(t: Targets) -> str:
    return t.queued


def _queued_sig(t: Targets) -> str:
    return t.sig(t.queued)


def _get(
    target: Callable[[Targets], str], body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Callable[[Targets], Request]:
    return lambda t: Request("GET", target(t), body, dict(headers or {}))


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _raw_submit(header_line: bytes) -> Callable[[Targets], Request]:
    def build(t: Targets) -> Request:
        body = _json(VALID_BODY)
        host = httpx.URL(str(t.api.base_url)).netloc.decode()
        raw = (
            b"POST /jobs HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
            b"X-Local-Principal-Arn: " + t.caller.encode() + b"\r\n" + header_line + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        return Request("POST", "/jobs", body, raw=raw)

    return build


# ------------------------------------------------------------------------------------------ bugs
# ------------------------------------------------------------------------------------------ corpus
def _corpus() -> list[Case]:
    cases: list[Case] = []

    def add(route: str, name: str, build: Callable[[Targets], Request], bug: str | None = None) -> None:
        cases.append(Case(f"{route}:{name}", route, build, bug))

    # POST /jobs: malformed JSON
    malformed: dict[str, bytes] = {
        "empty": b"",
        "open_brace": b"{",
        "close_brace": b"}",
        "open_bracket": b"[",
        "null": b"null",
        "true": b"true",
        "number": b"42",
        "string": b'"pixverse"',
        "array": b"[]",
        "single_quotes": b"{'model': 'pixverse'}",
        "trailing_comma": b'{"model": "pixverse",}',
        "missing_value": b'{"model":}',
        "nan_literal": b"NaN",
        "two_documents": b'{"model": "pixverse"}{"input": {}}',
        "truncated": _json(VALID_BODY)[:-3],
        "comment": b"/* hi */" + _json(VALID_BODY),
        "bom": "\ufeff".encode() + _json(VALID_BODY),
        "duplicate_keys_last_bad": b'{"model": "pixverse-v6-image-to-video", "model": "nope", "input": {}}',
    }
    for name, body in malformed.items():
        add("POST /jobs", f"malformed_{name}", _submit(body))
    add("POST /jobs", "malformed_invalid_utf8", _submit(b'{"model": "\xff\xfe", "input": {}}'))
    surrogate = _json(VALID_BODY).replace(b"A lighthouse", b"A \\ud800 lighthouse")
    add("POST /jobs", "malformed_lone_surrogate", _submit(surrogate))
    deep = b'{"model": "x", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    add("POST /jobs", "malformed_deep_nesting", _submit(deep))
    # content types
    for name, content_type in {
        "text": "text/plain",
        "form": "application/x-www-form-urlencoded",
        "xml": "text/xml",
    }.items():
        add(
            "POST /jobs",
            f"content_type_{name}",
            lambda t, ct=content_type: Request("POST", "/jobs", _json(VALID_BODY), {"Content-Type": ct}),
        )
    # huge bodies
    for name, size in {"65kib": 65 * 1024 + 1, "1mib": 1024 * 1024}.items():
        add("POST /jobs", f"huge_prompt_{name}", _submit(_with("input.prompt", "A" * size)))
        add("POST /jobs", f"huge_garbage_{name}", _submit(b"{" * size))
        add(
            "POST /jobs",
            f"huge_text_{name}",
            lambda t, n=size: Request("POST", "/jobs", b"x" * n, {"Content-Type": "text/plain"}),
        )
    add("POST /jobs", "prompt_over_5000_chars", _submit(_with("input.prompt", "A" * 5001)))
    add("POST /jobs", "metadata_over_2_kib", _submit(_with("metadata", {"pad": "x" * 3000})))
    # wrong types and values, every field
    wrong: dict[str, list[Any]] = {
        "model": [1, 1.5, True, None, [], {}, "", "PIXVERSE", "pixverse-v7", NOSQL_OBJECT],
        "input": ["x", 1, [], None, True],
        "webhook_mode": [1, True, [], {}, "TERMINAL", "", "async", NOSQL_OBJECT],
        "metadata": ["x", 1, [], True, None],
        "input.prompt": [1, None, [], {}, True, "", "   ", NOSQL_OBJECT],
        "input.image_url": [
            1,
            None,
            "",
            "not a url",
            "ftp://example.com/a.png",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "//example.com/a.png",
            "https://example.com/" + "a" * 2100,
            NOSQL_OBJECT,
        ],
        "input.resolution": [720, "720", "4k", "1080P", NOSQL_OBJECT],
        "input.duration": ["5", 5.5, True, 0, 16, -1, 10**40, NOSQL_OBJECT],
        "input.seed": ["1", 1.5, -1, 2**31, True, NOSQL_OBJECT],
        "input.generate_audio_switch": ["true", 1, 0, NOSQL_OBJECT],
        "input.generate_multi_clip_switch": ["false", [], NOSQL_OBJECT],
        "input.style": [1, "ANIME", "watercolor", NOSQL_OBJECT],
        "input.thinking_type": [1, "maybe", NOSQL_OBJECT],
        "input.negative_prompt": [1, [], "x" * 5001, NOSQL_OBJECT],
        "input.unknown_parameter": ["x"],
        "callback_url": ["https://attacker.example.com/"],
    }
    for path, values in wrong.items():
        for n, value in enumerate(values):
            add("POST /jobs", f"wrong_{path}_{n}_{type(value).__name__}", _submit(_with(path, value)))
    add("POST /jobs", "missing_model", _submit({"input": dict(V6_I2V_INPUT)}))
    add("POST /jobs", "missing_input", _submit({"model": V6_I2V}))
    add("POST /jobs", "v56_t2v_missing_required", _submit({"model": "pixverse", "input": {"prompt": "p"}}))
    add(
        "POST /jobs",
        "v56_i2v_integer_duration",
        _submit(
            {
                "model": "pixverse-i2v",
                "input": {"prompt": "p", "image_url": IMAGE_URL, "resolution": "720p", "duration": 5},
            }
        ),
    )
    for name, value in {"nan": "NaN", "infinity": "Infinity", "1e400": "1e400", "40_digits": str(10**40)}.items():
        raw = _json(VALID_BODY)[:-1] + b', "metadata": {"x": ' + value.encode() + b"}}"
        add("POST /jobs", f"metadata_number_{name}", _submit(raw))
    # injection strings in every field that is not free text
    for name, text in INJECTIONS.items():
        for path in (
            "model",
            "webhook_mode",
            "metadata",
            "input.image_url",
            "input.resolution",
            "input.duration",
            "input.seed",
            "input.style",
            "input.thinking_type",
            "input.generate_audio_switch",
        ):
            add("POST /jobs", f"inject_{name}_{path}", _submit(_with(path, text)))
        add("POST /jobs", f"inject_{name}_as_field_name", _submit({**VALID_BODY, text: 1}))
        add("POST /jobs", f"inject_{name}_as_parameter_name", _submit(_with(f"input.{text.replace('.', '_')}", 1)))
    # Idempotency-Key values the API must refuse (1-255 printable ASCII, no spaces)
    # (sent byte for byte: httpx refuses to send most of these header values)
    keys: dict[str, bytes] = {
        "space": b"a b",
        "tab": b"a\tb",
        "blank": b" ",
        "256_chars": b"k" * 256,
        "empty": b"",
        "crlf_folded": b"abc\r\n X-Injected: yes",
        "latin1": b"caf\xe9",
        "utf8": "caf\u00e9".encode(),
        "del_byte": b"a\x7fb",
        "nul_byte": b"a\x00b",
        "vertical_tab": b"a\x0bb",
    }
    for name, text in INJECTIONS.items():
        if "\r" not in text and any(not 0x21 <= ord(c) <= 0x7E for c in text):
            keys[f"inject_{name}"] = text.encode()
    for name, value in keys.items():
        add("POST /jobs", f"idempotency_key_{name}", _raw_submit(b"Idempotency-Key: " + value))

    # GET /jobs: query parameters
    def listing(query: str) -> Callable[[Targets], str]:
        return lambda t: f"/jobs?{query}"

    bad_status = ["delivered", "DELIVERED ", "ALL", "*", *INJECTIONS.values()]
    for n, value in enumerate(bad_status):
        add("GET /jobs", f"status_{n}", _get(listing(f"status={quote(value, safe='')}")))
    bad_limits = ["0", "-1", "101", "1e1", "abc", "1.5", " 5", "9" * 400, "0x10", *INJECTIONS.values()]
    for n, value in enumerate(bad_limits):
        add("GET /jobs", f"limit_{n}", _get(listing(f"limit={quote(value, safe='')}")))
    add("GET /jobs", "limit_superscript_two", _get(listing("limit=%C2%B2")))
    add("GET /jobs", "limit_arabic_indic_digits", _get(listing("limit=%D9%A1%D9%A2")))
    tokens: dict[str, Callable[[Targets], str]] = {
        "garbage": lambda t: "!!!",
        "percent": lambda t: "%%%",
        "not_json": lambda t: base64.urlsafe_b64encode(b"not json").decode(),
        "json_array": lambda t: _token([]),
        "missing_keys": lambda t: _token({"job_id": {"S": "x"}}),
        "other_owner": lambda t: _token(
            {
                "job_id": {"S": t.delivered},
                "owner": {"S": "someone-else"},
                "created_at": {"S": "2026-01-01T00:00:00.000Z"},
            }
        ),
        "nosql_values": lambda t: _token(
            {"job_id": NOSQL_OBJECT, "owner": {"S": t.caller}, "created_at": NOSQL_OBJECT}
        ),
        "number_types": lambda t: _token({"job_id": {"N": "1"}, "owner": {"S": t.caller}, "created_at": {"N": "1"}}),
        **{f"inject_{name}": (lambda t, s=text: s) for name, text in INJECTIONS.items()},
    }
    for name, token in tokens.items():
        add("GET /jobs", f"next_token_{name}", _get(lambda t, tk=token: f"/jobs?next_token={quote(tk(t), safe='')}"))
    add(
        "GET /jobs",
        "next_token_oversized_key",
        _get(
            lambda t: (
                "/jobs?next_token="
                + _token({"job_id": {"S": "j" * 3000}, "owner": {"S": t.caller}, "created_at": {"S": "2026-01-01"}})
            )
        ),
    )
    for n, query in enumerate(
        ["foo=bar", "%24where=1", "status%5B%24ne%5D=x", "limit=5&limit=6", "status=QUEUED&status=FAILED"]
    ):
        add("GET /jobs", f"query_{n}", _get(listing(query)))
    add("GET /jobs", "huge_body", _get(lambda t: "/jobs", b"x" * (1024 * 1024), {"Content-Type": "application/json"}))
    add("GET /jobs", "text_body", _get(lambda t: "/jobs", b"hello", {"Content-Type": "text/plain"}))

    # GET /jobs/{job_id}
    ids: dict[str, Callable[[Targets], str]] = {
        "unknown": lambda t: "job_" + "0" * 32,
        "other_callers": lambda t: t.delivered,  # read below as another caller
        "very_long": lambda t: "job_" + "f" * 5000,
        **{f"inject_{name}": (lambda t, s=text: s) for name, text in INJECTIONS.items() if name != "long"},
    }
    for name, job_id in ids.items():
        intruder = {"X-Local-Principal-Arn": "arn:aws:iam::000000000000:user/intruder"}
        headers = intruder if name == "other_callers" else {}
        add("GET /jobs/{id}", name, _get(lambda t, j=job_id: f"/jobs/{quote(j(t), safe='')}", headers=headers))
    add(
        "GET /jobs/{id}",
        "raw_dot_segments",
        lambda t: Request(
            "GET",
            "/jobs/../../etc/passwd",
            raw=b"GET /jobs/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
    )
    add(
        "GET /jobs/{id}",
        "huge_body",
        _get(lambda t: f"/jobs/{t.delivered}", b"x" * (1024 * 1024), {"Content-Type": "application/json"}),
    )

    # POST /webhooks/pixazo/{job_id}: forged (no valid signature) -> 401
    def completed(t: Targets) -> bytes:
        return _json(_callback(t))

    forged_sigs: dict[str, Callable[[Targets], str | None]] = {
        "missing": lambda t: None,
        "empty": lambda t: "",
        "zeros": lambda t: "0" * 64,
        "another_jobs": lambda t: t.sig(t.delivered),
        "truncated": lambda t: t.sig(t.queued)[:63],
        "extended": lambda t: t.sig(t.queued) + "0",
        "non_hex": lambda t: "g" * 64,
        "very_long": lambda t: "a" * 10_000,
        "wrong_secret": lambda t: sign(t.queued, "not-the-secret"),
        **{f"inject_{name}": (lambda t, s=text: s) for name, text in INJECTIONS.items()},
    }
    for name, sig in forged_sigs.items():
        add("POST /webhooks", f"forged_sig_{name}", _webhook(_queued, sig, completed))
    add(
        "POST /webhooks",
        "forged_sig_repeated",
        lambda t: Request(
            "POST",
            f"/webhooks/pixazo/{t.queued}?sig=0&sig={t.sig(t.queued)}",
            completed(t),
            {"Content-Type": "application/json"},
        ),
    )
    add(
        "POST /webhooks",
        "forged_media_url_to_metadata_service",
        _webhook(
            _queued,
            lambda t: "f" * 64,
            lambda t: _json(_callback(t, output={"media_url": ["http://169.254.169.254/latest"]})),
        ),
    )
    for name, text in INJECTIONS.items():
        add("POST /webhooks", f"forged_job_id_{name}", _webhook(lambda t, s=text: s, lambda t: "0" * 64, completed))
    add("POST /webhooks", "forged_huge_body", _webhook(_queued, lambda t: "0" * 64, lambda t: b"x" * (1024 * 1024)))
    # signed, but the body is not a callback -> 400 / 413 / 409 / 404
    for name, body in malformed.items():
        add("POST /webhooks", f"signed_malformed_{name}", _webhook(_queued, _queued_sig, lambda t, b=body: b))
    add("POST /webhooks", "signed_invalid_utf8", _webhook(_queued, _queued_sig, lambda t: b'{"status": "\xff"}'))
    add("POST /webhooks", "signed_deep_nesting", _webhook(_queued, _queued_sig, lambda t: b"[" * 5000 + b"]" * 5000))
    for name, size in {"65kib": 65 * 1024, "1mib": 1024 * 1024}.items():
        add(
            "POST /webhooks",
            f"signed_huge_{name}",
            _webhook(_queued, _queued_sig, lambda t, n=size: _json(_callback(t, error="e" * n))),
        )
    callback_wrong: dict[str, list[Any]] = {
        "request_id": [1, None, [], "", NOSQL_OBJECT],
        "status": ["DONE", "completed", 1, None, NOSQL_OBJECT, "COPYING", "DELIVERED"],
        "output": [
            "x",
            [],
            1,
            {"media_url": 1},
            {"media_url": [1]},
            {"media_url": ""},
            {"media_url": [""]},
            {"media_url": NOSQL_OBJECT},
            None,
        ],
    }
    for key, values in callback_wrong.items():
        for n, value in enumerate(values):
            add(
                "POST /webhooks",
                f"signed_wrong_{key}_{n}_{type(value).__name__}",
                _webhook(_queued, _queued_sig, lambda t, k=key, v=value: _json(_callback(t, **{k: v}))),
            )
    for name, text in INJECTIONS.items():
        add(
            "POST /webhooks",
            f"signed_inject_{name}_request_id",
            _webhook(_queued, _queued_sig, lambda t, s=text: _json(_callback(t, request_id=s))),
        )
    add(
        "POST /webhooks",
        "signed_another_request_id",
        _webhook(_queued, _queued_sig, lambda t: _json(_callback(t, request_id=f"{V6_I2V}_{uuid.uuid4()}"))),
    )
    add(
        "POST /webhooks",
        "signed_unknown_job",
        _webhook(lambda t: "job_" + "0" * 32, lambda t: t.sig("job_" + "0" * 32), completed),
    )
    return cases


CORPUS = _corpus()


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def bad_input_stack(stack_logs: Path) -> Iterator[tuple[StackProcess, LocalClient]]:
    env = {"LOCAL_TIME_SCALE": "0.001", "LOCAL_RECONCILE_EVERY_SECONDS": "10"}
    with local_stack(stack_logs / "bad-input.log", env) as pair:
        yield pair


def _signing_secret(client: LocalClient) -> str:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    secrets = session.client("secretsmanager", endpoint_url=client.ready["aws"])
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"] if "WebhookSigningSecret" in s["Name"]]
    assert len(names) == 1, f"expected one webhook signing secret, found {names}"
    return str(secrets.get_secret_value(SecretId=names[0])["SecretString"])


@pytest.fixture(scope="module")
def targets(bad_input_stack: tuple[StackProcess, LocalClient]) -> Iterator[Targets]:
    _, client = bad_input_stack
    caller = f"arn:aws:iam::000000000000:user/reliability-bad-{uuid.uuid4().hex[:8]}"
    # A connection per request: on a kept-alive one the local API's replies wait ~40 ms for a delayed ACK.
    api = httpx.Client(
        base_url=client.ready["api"],
        timeout=30,
        headers={"X-Local-Principal-Arn": caller},
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    try:
        delivered = api.post("/jobs", json=_with("input.prompt", "bad-input target [sim:size=1024]")).json()["job_id"]
        queued_id = api.post("/jobs", json=_with("input.prompt", "bad-input target [sim:no-callback]")).json()["job_id"]
        deadline = time.monotonic() + 30
        while api.get(f"/jobs/{delivered}").json()["status"] != "DELIVERED" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # its event and outbox flag
        assert api.get(f"/jobs/{delivered}").json()["status"] == "DELIVERED", "setup: target job not delivered"
        # Admitted ACCEPTED, then sent by the submitter: QUEUED at the gateway, its request_id known.
        queued = _sent(api, queued_id)
        assert queued["status"] == "QUEUED" and queued["request_id"], f"setup: {queued}"
        yield Targets(client, api, caller, delivered, queued["job_id"], queued["request_id"], _signing_secret(client))
    finally:
        api.close()


@dataclass
class Tally:
    """Answers to the corpus, by route and status, for the figures."""

    answers: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    # The state after the last case that changed nothing: the next case's "before".
    last_state: dict[str, Any] | None = None
    events_during_corpus: int | None = None


@pytest.fixture(scope="module")
def inbox(targets: Targets) -> Iterator[EventInbox]:
    box = EventInbox(targets.client)
    yield box
    box.close()


@pytest.fixture(scope="module")
def tally(results: ResultsBook, inbox: EventInbox) -> Iterator[Tally]:
    book = Tally()
    started = time.monotonic()
    yield book
    results.record(
        "bad_input",
        {
            "requests": sum(book.by_route.values()),
            "by_route": dict(sorted(book.by_route.items())),
            "answers": dict(sorted(book.answers.items())),
            "answered_5xx": len(book.server_errors),
            "answered_5xx_cases": book.server_errors,
            "cases_that_wrote": book.writes,
            "events_published_during_corpus": book.events_during_corpus,
            "known_bugs_xfail": sum(1 for c in CORPUS if c.bug),
            "wall_seconds": round(time.monotonic() - started, 1),
        },
    )


# ------------------------------------------------------------------------------------------ state
def _state(t: Targets) -> dict[str, Any]:
    """Everything a request could change: every item of the table, every object, the gateway's count."""
    client = t.client
    items = []
    for page in client.dynamodb.get_paginator("scan").paginate(TableName=client.ready["table"], ConsistentRead=True):
        items.extend(page["Items"])
    # The reconciler's run lease is the stack's own bookkeeping: its runs take and give it back
    # whatever the requests do.
    jobs = [item for item in items if not item["job_id"]["S"].startswith(RUN_LEASE_PREFIX)]
    canonical = sorted(json.dumps(item, sort_keys=True) for item in jobs)
    objects = sorted(
        (o["Key"], o["ETag"])
        for page in client.s3.get_paginator("list_objects_v2").paginate(Bucket=client.ready["bucket"])
        for o in page.get("Contents", [])
    )
    assert client.gateway is not None
    return {
        "table_items": len(canonical),
        "table_sha256": hashlib.sha256("\n".join(canonical).encode()).hexdigest(),
        "objects": objects,
        "gateway_submits": client.gateway.get("/_sim/stats").json()["submits_received"],
    }


def _sent(api: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The job once the submitter has sent it to the gateway (POST /jobs answers before that)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        if job["request_id"] or job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} not sent to the gateway in {timeout}s: {job}"
        time.sleep(0.05)


def _send(t: Targets, request: Request) -> tuple[int, str]:
    if request.raw is not None:
        url = httpx.URL(str(t.api.base_url))
        with socket.create_connection((url.host, url.port or 80), timeout=30) as sock:
            sock.sendall(request.raw)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body.decode(errors="replace")
    response = t.api.request(
        request.method, request.target, content=request.body or None, headers=dict(request.headers)
    )
    return response.status_code, response.text


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("case", [_param(c) for c in CORPUS])
def test_bad_input_is_refused_with_4xx_and_changes_nothing(case: Case, targets: Targets, tally: Tally) -> None:
    request = case.build(targets)
    before = tally.last_state or _state(targets)
    tally.last_state = None

    status, body = _send(targets, request)
    after = _state(targets)  # every write a function makes is done before it answers

    tally.answers[str(status)] += 1
    tally.by_route[case.route] += 1
    if status >= 500:
        tally.server_errors.append(case.id)
    if after != before:
        tally.writes.append(case.id)
    elif status < 500:
        tally.last_state = after
    assert 400 <= status < 500, f"{case.id}: answered {status} {body[:300]}"
    assert after == before, f"{case.id}: answered {status} but changed state: {before} -> {after}"


def test_the_corpus_published_no_event_and_left_the_targets_as_they_were(
    targets: Targets, tally: Tally, inbox: EventInbox
) -> None:
    """Runs after the corpus (module order): nothing it sent may have set anything in motion."""
    events = inbox.collect(wait=2.0)
    tally.events_during_corpus = len(events)
    queued = targets.api.get(f"/jobs/{targets.queued}").json()
    delivered = targets.api.get(f"/jobs/{targets.delivered}").json()
    known = {c.id for c in CORPUS if c.bug}

    assert not events, f"{len(events)} events published during the corpus: {[e.get('subject') for e in events]}"
    assert queued["status"] == "QUEUED" and queued["request_id"] == targets.queued_request_id, queued
    assert delivered["status"] == "DELIVERED", delivered
    assert set(tally.server_errors) <= known, f"5xx answers outside the known bugs: {tally.server_errors}"


FREE_TEXT_FIELDS = ("input.prompt", "input.negative_prompt", "metadata.note", "metadata.key")


@pytest.mark.parametrize("name", [n for n in INJECTIONS if n not in ("long",)])
def test_injection_in_free_text_is_accepted_and_kept_verbatim(name: str, targets: Targets) -> None:
    text = INJECTIONS[name]
    key = "".join(c for c in text if 0x21 <= ord(c) <= 0x7E)[:255] or "k"
    body = {
        "model": "pixverse",
        "input": {
            "prompt": f"{text} [sim:size=1024]",
            "negative_prompt": text,
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
        },
        "metadata": {"note": text, text[:100]: "key"},
    }

    first = targets.api.post("/jobs", json=body, headers={"Idempotency-Key": f"{key}-{uuid.uuid4().hex[:6]}"[:255]})
    assert first.status_code == 202, f"{name}: {first.status_code} {first.text[:300]}"
    job = _sent(targets.api, first.json()["job_id"])
    assert targets.client.gateway is not None
    sent = next(r for r in targets.client.gateway.get("/_sim/requests").json() if webhook_job_id(r) == job["job_id"])

    assert job["input"] == body["input"], f"{name}: input not kept verbatim"
    assert job["metadata"] == body["metadata"], f"{name}: metadata not kept verbatim"
    assert sent["body"] == body["input"], f"{name}: the gateway did not get the input verbatim"


def test_empty_metadata_key_is_refused_before_anything_is_written(targets: Targets) -> None:
    """Last in the module on purpose: with the bug, the item it writes breaks later scans of the table."""
    caller = {"X-Local-Principal-Arn": f"arn:aws:iam::000000000000:user/reliability-empty-key-{uuid.uuid4().hex[:8]}"}
    assert targets.client.gateway is not None
    sent_before = targets.client.gateway.get("/_sim/stats").json()["submits_received"]

    answer = targets.api.post("/jobs", json=_with("metadata", {"": 1}), headers=caller)
    listing = targets.api.get("/jobs", headers=caller)
    sent_after = targets.client.gateway.get("/_sim/stats").json()["submits_received"]

    assert answer.status_code == 400, f"answered {answer.status_code} {answer.text[:200]}"
    assert sent_after == sent_before, "a request was sent to the gateway"
    assert listing.status_code == 200, f"GET /jobs answered {listing.status_code} afterwards"
    # Admission sends to the gateway after answering: no job admitted is what shows nothing will be.
    assert listing.json()["jobs"] == [], "a job was admitted"
