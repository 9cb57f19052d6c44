"""The pixverse-jobs CLI against the local stack: progress to DELIVERED, download with sha256,
errors named with their field, and the documented exit codes. A user's mistake (a wrong or
scheme-less URL, no credentials, nothing listening, Ctrl-C) is one line and an exit code, never
a traceback: those cases also run the installed command in its own process."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pixverse_cli.__main__ as cli
import pytest
from pixverse_cli.__main__ import main
from pixverse_cli.client import (
    EXIT_API,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_NETWORK,
    EXIT_NOT_API,
    EXIT_OK,
    EXIT_USAGE,
)
from pixverse_local.harness import LocalClient
from traps import Trap

MiB = 1024 * 1024


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


# ----------------------------------------------------------------------------------- a user's mistakes
def _run_cli(
    *args: str, env: dict[str, str | None] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in its own process (so a traceback would show on stderr);
    ``env`` adds variables, or removes those it maps to None."""
    environment = {k: v for k, v in os.environ.items() if k != "PIXVERSE_JOBS_API_URL"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, "-m", "pixverse_cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


# No AWS credentials anywhere botocore looks (environment, files, a profile, the instance).
NO_CREDENTIALS: dict[str, str | None] = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _one_clean_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("service", ["gateway", "aws"])
def test_a_url_of_another_service_is_named_and_exits_7(client: LocalClient, service: str) -> None:
    url = client.ready[service]

    result = _run_cli("--api-url", url, "list")

    line = _one_clean_error(result)
    assert result.returncode == EXIT_NOT_API
    assert f"{url} is not the pixverse-jobs API" in line
    assert "api= URL" in line


@pytest.mark.parametrize("credentials", [True, False])
def test_a_url_without_scheme_says_so_and_exits_2(credentials: bool) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example"} if credentials else NO_CREDENTIALS

    result = _run_cli("--api-url", "127.0.0.1:3950", "list", env=env)

    line = _one_clean_error(result)
    assert result.returncode == EXIT_USAGE
    assert "'127.0.0.1:3950' has no scheme: did you mean http://127.0.0.1:3950?" in line


def test_no_aws_credentials_for_a_deployed_stack_exits_3() -> None:
    result = _run_cli("--api-url", "https://abc123.execute-api.us-east-1.amazonaws.com", "list", env=NO_CREDENTIALS)

    line = _one_clean_error(result)
    assert result.returncode == EXIT_API
    assert "no AWS credentials found to sign requests" in line and "--token" in line


def test_unreachable_api_in_its_own_process_exits_6_without_traceback(trap: Trap) -> None:
    trap.close()

    result = _run_cli("--api-url", f"http://127.0.0.1:{trap.port}", "get", "job_0000")

    assert "cannot reach" in _one_clean_error(result)
    assert result.returncode == EXIT_NETWORK


@pytest.fixture
def html_server() -> Iterator[str]:
    """Something that answers every GET 200 with an HTML page (a wrong URL behind a web server)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_non_json_answer_is_named_and_exits_7(html_server: str) -> None:
    result = _run_cli("--api-url", html_server, "get", "job_0000")

    line = _one_clean_error(result)
    assert result.returncode == EXIT_NOT_API
    assert "GET /jobs/job_0000 answered 200 (text/html" in line


def test_ctrl_c_during_wait_says_how_to_resume_and_exits_130(api: LocalClient) -> None:
    job_id = api.submit(
        {"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt("[sim:seconds=30]")}}
    ).json()["job_id"]
    env = {"PIXVERSE_JOBS_API_URL": api.ready["api"], "PYTHONUNBUFFERED": "1"}
    environment = {**os.environ, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "pixverse_cli", "wait", job_id, "--interval", "0.2"],
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the first status line: the command is waiting
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=30)[1]

    assert job_id in first
    assert process.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in rest
    assert f"Resume watching with: pixverse-jobs wait {job_id}" in rest


# ----------------------------------------------------------------------------------- options either side
def test_global_options_after_the_command_are_taken(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt()}}).json()["job_id"]
    api.wait_for(job_id)
    os.environ.pop("PIXVERSE_JOBS_API_URL")  # the fixture's monkeypatch restores it

    assert main(["get", job_id, "--api-url", api.ready["api"]]) == EXIT_OK
    assert f'"job_id": "{job_id}"' in capsys.readouterr().out

    assert main(["list", "--json", "--limit", "1", "--api-url", api.ready["api"]]) == EXIT_OK
    assert capsys.readouterr().out.startswith('{\n  "jobs": [')

    assert main(["--api-url", "http://127.0.0.1:1", "replay", job_id, "--json", "--api-url", api.ready["api"]]) == 0
    assert '"event_type": "pixverse.job.delivered"' in capsys.readouterr().out


# ----------------------------------------------------------------------------------- wait's line
def test_wait_piped_writes_one_plain_line_per_status(api: LocalClient, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = api.submit(
        {"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt("[sim:seconds=2]")}, "webhook_mode": "sync"}
    ).json()["job_id"]

    code = main(["wait", job_id, "--interval", "0.1"])

    _, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "\r" not in err and "\x1b" not in err
    statuses = [line.split(": ", 1)[1].split(" (")[0].split(" -> ")[-1] for line in err.splitlines()]
    assert statuses[-1] == "DELIVERED"
    assert len(statuses) == len(set(statuses)), err  # one line per change, none repeated while polling
    assert "(step 4 of 6; generating)" in err


# ----------------------------------------------------------------------------------- download resumes
def test_interrupted_download_resumes_with_a_range_and_checks_the_sha256(
    api: LocalClient, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 1 MiB video (the simulator's clip padded), so 64 KiB reads leave a .part half-way.
    prompt = _prompt(f"[sim:size={MiB}]")
    job_id = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": prompt}}).json()["job_id"]
    job = api.wait_for(job_id)
    size = int(job["outputs"][0]["size"])
    assert size == MiB
    monkeypatch.setattr(cli, "DOWNLOAD_CHUNK_BYTES", 64 * 1024)
    real_progress = cli._progress

    def ctrl_c_half_way(name: str, received: int, total: int) -> None:
        real_progress(name, received, total)
        if received >= total // 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_progress", ctrl_c_half_way)
    assert main(["download", job_id, "-o", str(tmp_path)]) == EXIT_INTERRUPTED
    _, err = capsys.readouterr()
    assert f"Resume with: pixverse-jobs download {job_id} -o {tmp_path}" in err
    (partial,) = tmp_path.glob("*.part")
    kept = partial.stat().st_size
    assert 0 < kept < size

    monkeypatch.setattr(cli, "_progress", real_progress)
    asked: list[tuple[str | None, int, str | None]] = []
    real_stream = httpx.stream

    def recording_stream(method: str, url: str, **kwargs: Any) -> Any:
        context = real_stream(method, url, **kwargs)

        class Recording:
            def __enter__(self) -> httpx.Response:
                response = context.__enter__()
                asked.append((kwargs["headers"].get("Range"), response.status_code, response.headers["Content-Length"]))
                return response

            def __exit__(self, *exc: object) -> None:
                context.__exit__(*exc)

        return Recording()

    monkeypatch.setattr(cli.httpx, "stream", recording_stream)
    assert main(["download", job_id, "-o", str(tmp_path)]) == EXIT_OK

    out, _ = capsys.readouterr()
    assert asked == [(f"bytes={kept}-", 206, str(size - kept))]  # only the rest was fetched
    written = Path(out.strip())
    assert hashlib.sha256(written.read_bytes()).hexdigest() == job["outputs"][0]["sha256"]
    assert not list(tmp_path.glob("*.part"))


def test_a_part_file_that_does_not_match_is_deleted_and_exits_4(
    api: LocalClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt()}}).json()["job_id"]
    job = api.wait_for(job_id)
    (tmp_path / f"{job_id}-{Path(job['outputs'][0]['key']).name}.part").write_bytes(b"not the video's first bytes")

    assert main(["download", job_id, "-o", str(tmp_path)]) == 4

    assert "sha256 mismatch" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------- events tail
def test_events_tail_prints_a_jobs_events_and_leaves_no_queue_after_ctrl_c(api: LocalClient) -> None:
    ready = api.ready
    command = ["events", "tail", "--aws-endpoint", ready["aws"], "--topic-arn", ready["topic"], "--timeout", "120"]
    tail = subprocess.Popen(
        [sys.executable, "-m", "pixverse_cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert tail.stdout is not None and tail.stderr is not None
    assert tail.stderr.readline().startswith("listening to " + ready["topic"])  # subscribed from here on
    job_id = api.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": _prompt("[sim:fail]")}}).json()[
        "job_id"
    ]

    lines = iter(tail.stdout.readline, "")
    line = next(line for line in lines if job_id in line)  # other tests' late events may come first
    tail.send_signal(signal.SIGINT)
    _, err = tail.communicate(timeout=30)

    when, event_type, shown_id, status, error_code = line.split()
    assert (event_type, shown_id, status, error_code) == ("pixverse.job.failed", job_id, "FAILED", "generation_failed")
    assert when.endswith("Z")
    assert tail.returncode == EXIT_INTERRUPTED and "Traceback" not in err
    assert _tail_queues(api) == []
    endpoints = [s["Endpoint"] for s in api.sns.list_subscriptions_by_topic(TopicArn=ready["topic"])["Subscriptions"]]
    assert not [e for e in endpoints if "pixverse-jobs-tail-" in e]


def test_events_tail_gives_up_at_its_timeout_exits_5_and_removes_its_queue(
    api: LocalClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = api.ready
    args = ["events", "tail", "--aws-endpoint", ready["aws"], "--topic-arn", ready["topic"], "--json"]

    assert main([*args, "--timeout", "1", "--count", "1", "--job", "job_none"]) == 5

    assert "gave up after 1 s with 0 of 1 events" in capsys.readouterr().err
    assert _tail_queues(api) == []


def _tail_queues(api: LocalClient) -> list[str]:
    return list(api.sqs.list_queues(QueueNamePrefix="pixverse-jobs-tail-").get("QueueUrls", []))


def test_events_tail_at_a_url_that_is_not_aws_exits_7_and_leaves_no_queue(
    api: LocalClient, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["events", "tail", "--aws-endpoint", api.ready["api"], "--topic-arn", api.ready["topic"], "--timeout", "1"]

    assert main(args) == EXIT_NOT_API

    assert f"{api.ready['api']} is not an AWS endpoint" in capsys.readouterr().err
    assert _tail_queues(api) == []
