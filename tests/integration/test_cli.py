"""The pixverse-jobs CLI against the local stack: progress to DELIVERED, download with sha256,
errors named with their field, and the documented exit codes."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from pixverse_cli.__main__ import main
from pixverse_cli.client import EXIT_API, EXIT_JOB_FAILED, EXIT_NETWORK, EXIT_OK, EXIT_USAGE
from pixverse_local.harness import LocalClient
from traps import Trap


@pytest.fixture
def api(client: LocalClient, monkeypatch: pytest.MonkeyPatch) -> LocalClient:
    monkeypatch.setenv("PIXVERSE_JOBS_API_URL", client.ready["api"])
    return client


def _prompt(extra: str = "") -> str:
    return f"Paper boats on a rainy street {uuid.uuid4().hex[:8]} {extra}".strip()


def test_submit_wait_shows_progress_and_ends_delivered(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    model_and_params = ["pixverse-c1-text-to-video", "--prompt", _prompt(), "--duration", "5", "--audio"]
    code = main(["submit", *model_and_params, "--webhook-mode", "sync", "--wait", "--interval", "0.1"])

    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "-> PROCESSING" in err and "-> DELIVERED" in err
    assert out.strip().splitlines()[-1].startswith("s3://")
    job_id = out.split()[1]
    job = api.get_job(job_id)
    assert job["input"] == {"prompt": job["input"]["prompt"], "duration": 5, "generate_audio_switch": True}


def test_download_writes_the_video_with_its_sha256(
    api: LocalClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt()}}).json()["job_id"]
    job = api.wait_for(job_id)

    code = main(["download", job_id, "-o", str(tmp_path)])

    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    written = Path(out.strip())
    assert hashlib.sha256(written.read_bytes()).hexdigest() == job["outputs"][0]["sha256"]
    assert not list(tmp_path.glob("*.part"))


def test_invalid_request_names_each_field_and_exits_2(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["submit", "pixverse-i2v", "--prompt", "x", "--duration", "7", "--resolution", "4k"])

    _, err = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "input.duration: must be one of '5', '10', got '7'" in err
    assert "input.resolution" in err and "input.image_url: is required" in err


def test_failed_job_exits_1_with_its_error(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    params = ["--prompt", _prompt("[sim:fail]"), "--aspect-ratio", "16:9", "--resolution", "720p", "--duration", "5"]
    code = main(["submit", "pixverse", *params, "--wait", "--interval", "0.1"])

    _, err = capsys.readouterr()
    assert code == EXIT_JOB_FAILED
    assert "job FAILED: generation_failed" in err


def test_unknown_job_exits_3(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "job_0000"]) == EXIT_API
    assert "404 not_found" in capsys.readouterr().err


def test_unreachable_api_exits_6(
    trap: Trap, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trap.close()  # nothing listens there any more
    monkeypatch.setenv("PIXVERSE_JOBS_API_URL", f"http://127.0.0.1:{trap.port}")

    assert main(["list"]) == EXIT_NETWORK
    assert "cannot reach" in capsys.readouterr().err


def test_no_api_configured_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PIXVERSE_JOBS_API_URL", raising=False)

    assert main(["list"]) == EXIT_USAGE
    assert "--api-url" in capsys.readouterr().err


def test_cancel_says_what_may_be_billed_and_an_ended_job_exits_3(
    api: LocalClient, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = api.submit(
        {"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt("[sim:seconds=20]")}}
    ).json()["job_id"]
    api.wait_sent(job_id)

    code = main(["cancel", job_id])

    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert out.strip() == f"cancelled {job_id} (the gateway has no cancel: the generation may still be billed)"
    assert api.get_job(job_id)["status"] == "CANCELLED"

    assert main(["cancel", job_id]) == EXIT_API
    _, err = capsys.readouterr()
    assert f"409 already_ended: job {job_id} has already ended (CANCELLED)" in err


def test_submit_with_a_deadline_and_wait_exits_1_deadline_exceeded(
    api: LocalClient, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = _prompt("[sim:seconds=20]")
    code = main(
        ["submit", "pixverse-c1-text-to-video", "--prompt", prompt, "--deadline", "2", "--wait", "--interval", "0.2"]
    )

    _, err = capsys.readouterr()
    assert code == EXIT_JOB_FAILED
    assert "job CANCELLED: deadline_exceeded" in err


def test_replay_by_id_and_since_prints_each_event_id(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    since = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt()}}).json()
    first = api.wait_for(since["job_id"])
    second_id = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt("[sim:fail]")}}).json()[
        "job_id"
    ]
    api.wait_for(second_id)

    assert main(["replay", first["job_id"]]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert out.split()[:2] == [first["job_id"], "pixverse.job.delivered"]

    assert main(["replay", "--since", since["created_at"], "--status", "FAILED"]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert [line.split()[:2] for line in out.strip().splitlines()] == [[second_id, "pixverse.job.failed"]]

    assert main(["replay"]) == EXIT_USAGE
    assert main(["replay", "--since", "yesterday"]) == EXIT_USAGE
    _, err = capsys.readouterr()
    assert "--since: not an ISO 8601 time: 'yesterday'" in err
