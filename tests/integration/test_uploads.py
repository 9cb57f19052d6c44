"""Images from S3 and uploads, end to end on the local stack: an image-to-video job whose
image_url is s3:// reaches the gateway simulator as a URL it fetches, with the same bytes; POST
/uploads and its presigned PUT feed a job; what is refused is a 400 naming input.image_url; the
presigned URL the gateway got never shows in the API, the job record, the events or the logs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import INPUT_BUCKET
from pixverse_cli.__main__ import main as cli_main
from pixverse_cli.client import EXIT_OK, EXIT_USAGE
from pixverse_jobs.inputs import MAX_INPUT_IMAGE_BYTES
from pixverse_local.harness import TERMINAL, EventInbox, LocalClient, StackProcess

MODEL = "pixverse-v6-image-to-video"
PNG = b"\x89PNG\r\n\x1a\n" + hashlib.sha256(b"still").digest() * 64
SIGNATURE = "X-Amz-Signature"


@pytest.fixture(scope="module")
def input_bucket(client: LocalClient) -> str:
    # The local stack created it in its emulator, from INPUT_BUCKETS (conftest.py).
    client.s3.head_bucket(Bucket=INPUT_BUCKET)
    return INPUT_BUCKET


def _caller() -> dict[str, str]:
    return {"X-Local-Principal-Arn": f"arn:aws:iam::123456789012:user/uploads-{uuid.uuid4().hex[:8]}"}


def _job(image_url: str) -> dict[str, Any]:
    return {"model": MODEL, "input": {"prompt": f"uploads {uuid.uuid4().hex[:8]}", "image_url": image_url}}


def _put_object(client: LocalClient, bucket: str, body: bytes, content_type: str = "image/png") -> str:
    key = f"stills/{uuid.uuid4().hex}.png"
    client.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return f"s3://{bucket}/{key}"


def _refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["input.image_url"], details
    message: str = details[0]["message"]
    return message


def _upload(client: LocalClient, headers: dict[str, str], body: bytes = PNG) -> dict[str, Any]:
    answer = client.api.post("/uploads", json={"content_type": "image/png", "size": len(body)}, headers=headers)
    assert answer.status_code == 201, answer.text
    upload: dict[str, Any] = answer.json()
    return upload


def _delivered_with_fetched_bytes(
    client: LocalClient, job_id: str, uri: str, body: bytes, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    job = client.api.get(f"/jobs/{job_id}", headers=headers).json()
    while job["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        job = client.api.get(f"/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "DELIVERED", job
    assert job["input"]["image_url"] == uri
    gateway_saw = client.simulated_request(job["request_id"])
    # The gateway got an https-or-loopback presigned GET, which it fetched: the same bytes.
    assert gateway_saw["body"]["image_url"].startswith("http") and SIGNATURE in gateway_saw["body"]["image_url"]
    assert gateway_saw["image"]["outcome"] == "fetched"
    assert (gateway_saw["image"]["size"], gateway_saw["image"]["sha256"]) == (
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    return job


def test_a_job_from_an_allowed_bucket_reaches_the_gateway_as_a_url_it_fetches(
    client: LocalClient, input_bucket: str, inbox: EventInbox, stack: StackProcess
) -> None:
    # Given a PNG in an InputBuckets bucket, stored with a type S3 does not know as an image
    uri = _put_object(client, input_bucket, PNG, content_type="binary/octet-stream")

    answer = client.submit(_job(uri))

    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = _delivered_with_fetched_bytes(client, job_id, uri, PNG)
    # The presigned URL the gateway got is nowhere the caller, a consumer or an operator looks (GET
    # shows presigned download links of the delivered video, which are other URLs).
    presigned = client.simulated_request(job["request_id"])["body"]["image_url"]
    signature = parse_qs(urlsplit(presigned).query)[SIGNATURE][0]
    listed = client.api.get("/jobs", params={"limit": 100}).json()
    stored = client.dynamodb.get_item(TableName=client.ready["table"], Key={"job_id": {"S": job_id}})["Item"]
    events = inbox.for_job(job_id, wait=5.0)
    assert events, "no event for the job"
    log = Path(str(stack.log_path)).read_text(encoding="utf-8", errors="replace")
    assert job_id in log, "the stack's log holds the functions' lines"
    for shown in (json.dumps(job), json.dumps(listed), json.dumps(stored), json.dumps(events), log):
        assert signature not in shown
    assert stored["input"]["M"]["image_url"] == {"S": uri}


def test_a_bucket_not_allowed_is_a_400_naming_image_url_and_the_allowed_buckets(client: LocalClient) -> None:
    message = _refusal(client.submit(_job("s3://some-other-bucket/still.png")))

    assert "'some-other-bucket' is not allowed" in message and INPUT_BUCKET in message and "uploads/" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, "does not exist"),
        (b"<html>a page, not an image</html>", "is not a JPEG, PNG or WebP image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(MAX_INPUT_IMAGE_BYTES - 7), f"is {MAX_INPUT_IMAGE_BYTES + 1} bytes"),
    ],
    ids=["missing", "not-an-image", "too-large"],
)
def test_an_object_that_is_not_an_accepted_image_is_a_400(
    client: LocalClient, input_bucket: str, body: bytes | None, expected: str
) -> None:
    uri = (
        f"s3://{input_bucket}/stills/{uuid.uuid4().hex}.png"
        if body is None
        else _put_object(client, input_bucket, body)
    )

    message = _refusal(client.submit(_job(uri)))

    assert (
        expected in message and "image/jpeg, image/png, image/webp" in message and str(MAX_INPUT_IMAGE_BYTES) in message
    )


def test_an_upload_and_its_put_feed_a_job(client: LocalClient) -> None:
    caller = _caller()
    upload = _upload(client, caller)

    put = httpx.put(upload["upload_url"], content=PNG, headers=upload["headers"], timeout=30)
    answer = client.submit(_job(upload["image_url"]), headers=caller)

    assert put.status_code == 200, put.text
    assert upload["image_url"].startswith(f"s3://{client.ready['bucket']}/uploads/")
    assert answer.status_code == 202, answer.text
    _delivered_with_fetched_bytes(client, answer.json()["job_id"], upload["image_url"], PNG, caller)


@pytest.mark.parametrize(
    ("headers", "body"),
    [({"Content-Type": "image/jpeg"}, PNG), ({"Content-Type": "image/png"}, PNG + b"more")],
    ids=["other-type", "other-size"],
)
def test_a_put_with_another_type_or_size_than_signed_fails(
    client: LocalClient, headers: dict[str, str], body: bytes
) -> None:
    upload = _upload(client, _caller())

    put = httpx.put(upload["upload_url"], content=body, headers=headers, timeout=30)

    assert put.status_code == 403 and "SignatureDoesNotMatch" in put.text
    bucket, key = upload["image_url"][len("s3://") :].split("/", 1)
    assert client.s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0


def test_another_callers_upload_is_refused_without_showing_its_key(client: LocalClient) -> None:
    upload = _upload(client, _caller())
    httpx.put(upload["upload_url"], content=PNG, headers=upload["headers"], timeout=30).raise_for_status()

    message = _refusal(client.submit(_job(upload["image_url"]), headers=_caller()))

    assert "is not one of your uploads" in message
    assert upload["image_url"].rsplit("/", 2)[1] not in message


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"content_type": "image/gif", "size": 10}, ["content_type"]),
        ({"content_type": "image/png", "size": MAX_INPUT_IMAGE_BYTES + 1}, ["size"]),
        ({"size": 0, "extra": 1}, ["extra", "content_type", "size"]),
    ],
)
def test_an_upload_request_out_of_bounds_is_a_400_naming_each_field(
    client: LocalClient, body: dict[str, Any], fields: list[str]
) -> None:
    answer = client.api.post("/uploads", json=body)

    assert answer.status_code == 400, answer.text
    assert [d["field"] for d in answer.json()["error"]["details"]] == fields


def test_other_methods_on_uploads_are_405_with_allow(client: LocalClient) -> None:
    answer = client.api.get("/uploads")

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"


# ----------------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli_api(client: LocalClient, monkeypatch: pytest.MonkeyPatch) -> LocalClient:
    monkeypatch.setenv("PIXVERSE_JOBS_API_URL", client.ready["api"])
    return client


def test_cli_upload_prints_the_image_url_of_the_same_bytes(
    cli_api: LocalClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    still = tmp_path / "still.bin"  # no extension: the type comes from the bytes
    still.write_bytes(PNG)

    code = cli_main(["upload", str(still)])

    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    bucket, key = out.strip()[len("s3://") :].split("/", 1)
    assert cli_api.object_sha256(bucket, key) == (len(PNG), hashlib.sha256(PNG).hexdigest())
    assert cli_api.s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "image/png"


def test_cli_submit_with_an_image_uploads_it_and_the_job_is_delivered(
    cli_api: LocalClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    still = tmp_path / "still.png"
    still.write_bytes(PNG)

    code = cli_main(
        [
            "submit",
            MODEL,
            "--image",
            str(still),
            "--prompt",
            f"cli {uuid.uuid4().hex[:8]}",
            "--wait",
            "--interval",
            "0.1",
        ]
    )

    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    job = cli_api.get_job(out.split()[1])
    assert job["input"]["image_url"].startswith("s3://")
    fetched = cli_api.simulated_request(job["request_id"])["image"]
    assert (fetched["outcome"], fetched["sha256"]) == ("fetched", hashlib.sha256(PNG).hexdigest())


def test_cli_upload_of_a_file_that_is_no_image_exits_2(
    cli_api: LocalClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page.png"
    page.write_text("<html>not an image</html>")

    code = cli_main(["upload", str(page)])

    _, err = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "is not a JPEG, PNG or WebP image" in err


def test_cli_run_as_a_program_knows_upload(tmp_path: Path) -> None:
    # The subcommands' block must be defined before the module's `if __name__ == "__main__"`
    # runs main() (it once came after: python -m pixverse_cli failed with a NameError, exit 1).
    page = tmp_path / "page.png"
    page.write_text("<html>not an image</html>")

    run = subprocess.run(
        [sys.executable, "-m", "pixverse_cli", "--api-url", "http://127.0.0.1:9", "upload", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == EXIT_USAGE, run.stderr
    assert "is not a JPEG, PNG or WebP image" in run.stderr
