"""pixverse-jobs: submit, watch and download PixVerse video jobs of a pixverse-jobs stack.

    pixverse-jobs submit pixverse-c1-text-to-video --prompt "Paper boats on a rainy street" --wait
    pixverse-jobs get JOB_ID | list [--status S] | wait JOB_ID | download JOB_ID [-o DIR]
    pixverse-jobs cancel JOB_ID | replay JOB_ID... | replay --since 2026-12-07T00:00:00Z [--status S]
    pixverse-jobs upload still.png | submit pixverse-v6-image-to-video --image still.png --prompt "..."
    pixverse-jobs events tail [--job JOB_ID] [--count N] [--timeout S]

The API is --api-url, else $PIXVERSE_JOBS_API_URL, else the ApiUrl output of --stack-name
(for the local stack: the api= URL of its ready: line). Requests to a deployed stack are signed
with your AWS credentials (SigV4), or carry --token / $PIXVERSE_JOBS_TOKEN as a bearer JWT
(AuthMode jwt); the local stack needs neither. Global options go before or after the command.

Exit codes: 0 done; 1 the job failed (wait, submit --wait, download of a job not delivered);
2 bad arguments, a URL without http(s)://, or a request the API refused as invalid (400/413);
3 another refusal (401/403/404/409/429) or no AWS credentials; 4 server or gateway trouble
(5xx), or a download whose sha256 does not match; 5 gave up waiting; 6 the API (or AWS) could
not be reached; 7 something else answered at the URL (not this API: check --api-url);
130 interrupted (Ctrl-C; wait and download say how to resume).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from pixverse_jobs.catalog import MODELS, get_model
from pixverse_jobs.inputs import MAX_INPUT_IMAGE_BYTES, SNIFF_BYTES, sniff_image_type

from pixverse_cli.client import (
    API_URL_ENV,
    EXIT_API,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_NETWORK,
    EXIT_NOT_API,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    TOKEN_ENV,
    ApiClient,
    CliError,
    api_url_from_stack,
    check_api_url,
)
from pixverse_cli.events_tail import add_events_commands, events_tail

# Keys an answer must have to be the API's (a wrong URL's answer is said to be one).
JOB_KEYS = ("job_id", "status")

TERMINAL = {"DELIVERED", "SUBMIT_FAILED", "FAILED", "ERROR", "DELIVERY_FAILED", "CANCELLED"}

# Parameter flags -> the gateway parameter they set.
PARAMETER_FLAGS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "image_url": "image_url",
    "duration": "duration",
    "resolution": "resolution",
    "aspect_ratio": "aspect_ratio",
    "style": "style",
    "seed": "seed",
    "audio": "generate_audio_switch",
    "multi_clip": "generate_multi_clip_switch",
    "thinking": "thinking_type",
}


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes. The top-level parser holds the defaults; each command's
    parser repeats them with SUPPRESS, so a value given after the command wins and one given
    before it is not overwritten by the command's parser."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--api-url", default=default(None), help=f"API base URL (default ${API_URL_ENV})")
    parser.add_argument(
        "--stack-name", default=default(None), help="take the API URL (and the events topic) from this stack's outputs"
    )
    parser.add_argument(
        "--region", default=default(None), help="AWS region for SigV4 and --stack-name (default: your AWS config)"
    )
    parser.add_argument(
        "--token", default=default(None), help=f"bearer JWT for a stack in AuthMode jwt (default ${TOKEN_ENV})"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print raw JSON answers")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixverse-jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_parser_with([common]))

    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    for flag in PARAMETER_FLAGS:
        name = "--" + flag.replace("_", "-")
        if flag in ("audio", "multi_clip"):
            submit.add_argument(name, action=argparse.BooleanOptionalAction, default=None)
        else:
            submit.add_argument(name, metavar="VALUE")
    submit.add_argument("--input", type=Path, metavar="FILE.json", help="all parameters from a JSON object file")
    submit.add_argument("--metadata", metavar="JSON", help="a JSON object echoed in the job and its events")
    submit.add_argument("--webhook-mode", choices=("terminal", "sync"))
    submit.add_argument("--idempotency-key", metavar="KEY")
    submit.add_argument(
        "--deadline", type=int, metavar="SECONDS", help="cancel the job if it has not ended this many seconds after"
    )
    submit.add_argument("--wait", action="store_true", help="then wait for the job to end, showing progress")
    _wait_options(submit)

    get = commands.add_parser("get", help="show a job")
    get.add_argument("job_id")

    listing = commands.add_parser("list", help="list your jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--next-token")
    listing.add_argument("--all", action="store_true", help="follow next_token to the end")

    wait = commands.add_parser("wait", help="wait for a job to end, showing each status change")
    wait.add_argument("job_id")
    _wait_options(wait)

    download = commands.add_parser("download", help="download a delivered job's videos (sha256 checked)")
    download.add_argument("job_id")
    download.add_argument("-o", "--output", type=Path, default=Path("."), help="directory (default .)")

    cancel = commands.add_parser("cancel", help="cancel a job that has not ended (the gateway may still bill it)")
    cancel.add_argument("job_id")

    replay = commands.add_parser(
        "replay", help="publish ended jobs' final events again (same event ids), for a consumer that lost them"
    )
    replay.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    replay.add_argument("--since", metavar="ISO", help="every ended job of yours created at or after this time")
    replay.add_argument("--status", choices=sorted(TERMINAL), help="with --since: only jobs that ended so")

    _add_upload_commands(commands, submit)
    add_events_commands(commands)
    return parser


def _parser_with(parents: list[argparse.ArgumentParser]) -> type[argparse.ArgumentParser]:
    """An ArgumentParser class whose instances (each command's parser) take ``parents``' options."""

    class CommandParser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parents"] = [*parents, *kwargs.get("parents", [])]
            super().__init__(*args, **kwargs)

    return CommandParser


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (default 900)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "events":
            return events_tail(args)
        return _run(args)
    except CliError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pixverse-jobs list | head`): not an error of ours. Point stdout
        # at devnull so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        handler: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
            "submit": _submit,
            "get": _get,
            "list": _list,
            "wait": _wait,
            "download": _download,
            "cancel": _cancel,
            "replay": _replay,
        }
        handler.update(UPLOAD_COMMANDS)
        return handler[args.command](client, args)
    finally:
        client.close()


def _client(args: argparse.Namespace) -> ApiClient:
    if args.api_url:
        url = check_api_url(args.api_url, "--api-url")
    elif os.environ.get(API_URL_ENV):
        url = check_api_url(os.environ[API_URL_ENV], f"${API_URL_ENV}")
    elif args.stack_name:
        url = check_api_url(api_url_from_stack(args.stack_name, args.region), f"stack {args.stack_name}'s ApiUrl")
    else:
        raise CliError(f"no API: pass --api-url, set {API_URL_ENV}, or pass --stack-name", EXIT_USAGE)
    return ApiClient.connect(url, token=args.token or os.environ.get(TOKEN_ENV), region=args.region)


def _fail(exc: CliError) -> int:
    print(f"error: {exc.message}", file=sys.stderr)
    for detail in exc.details:
        if isinstance(detail, dict):
            print(f"  {detail.get('field')}: {detail.get('message')}", file=sys.stderr)
    return exc.exit_code


# ----------------------------------------------------------------------------------- commands
def _submit(client: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"model": args.model, "input": _input_of(args)}
    if args.metadata:
        body["metadata"] = _json_object(args.metadata, "--metadata")
    if args.webhook_mode:
        body["webhook_mode"] = args.webhook_mode
    if args.deadline is not None:
        body["deadline_seconds"] = args.deadline
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    if args.image is not None:
        body["input"]["image_url"] = upload_file(client, args.image)
    job = client.request("POST", "/jobs", body=body, headers=headers, expect=JOB_KEYS)
    if args.json and not args.wait:
        _print_json(job)
    else:
        print(
            f"submitted {job['job_id']} ({job['model']}): {job['status']}", file=sys.stderr if args.json else sys.stdout
        )
    if not args.wait:
        return EXIT_OK
    return _wait_for(client, job["job_id"], args)


def _input_of(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.input:
        try:
            params = _json_object(args.input.read_text(), f"--input {args.input}")
        except OSError as exc:
            raise CliError(f"--input: cannot read {args.input}: {exc.strerror}", EXIT_USAGE) from exc
    model = get_model(args.model)
    for flag, name in PARAMETER_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        param = model.param(name) if model else None
        # The flag's text in the parameter's own type (duration is an integer for most models and
        # a string for V5.6 i2v); what cannot convert goes as text for the API to name.
        if param is not None and param.type == "integer" and isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        params[name] = value
    return params


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}", EXIT_USAGE) from exc
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object", EXIT_USAGE)
    return value


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    _print_json(client.request("GET", f"/jobs/{args.job_id}", expect=JOB_KEYS))
    return EXIT_OK


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit)}
    if args.status:
        params["status"] = args.status
    token = args.next_token
    jobs: list[dict[str, Any]] = []
    while True:
        page = client.request(
            "GET", "/jobs", params={**params, **({"next_token": token} if token else {})}, expect=("jobs",)
        )
        jobs.extend(page["jobs"])
        token = page.get("next_token")
        if not token or not args.all:
            break
    if args.json:
        _print_json({"jobs": jobs, "next_token": token})
        return EXIT_OK
    for job in jobs:
        print(f"{job['job_id']}  {job['status']:<15} {job['model']:<28} {job['created_at']}")
    if token:
        print(f"more: --next-token {token}", file=sys.stderr)
    return EXIT_OK


def _wait(client: ApiClient, args: argparse.Namespace) -> int:
    return _wait_for(client, args.job_id, args)


def _wait_for(client: ApiClient, job_id: str, args: argparse.Namespace) -> int:
    line = StatusLine(sys.stderr)
    try:
        return _watch(client, job_id, args, line)
    except KeyboardInterrupt:
        line.end()
        print(f"interrupted; the job goes on. Resume watching with: pixverse-jobs wait {job_id}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        line.end()


def _watch(client: ApiClient, job_id: str, args: argparse.Namespace, line: StatusLine) -> int:
    started = time.monotonic()
    while True:
        job = client.request("GET", f"/jobs/{job_id}", expect=JOB_KEYS)
        line.show(job, time.monotonic() - started)
        status = job["status"]
        if status in TERMINAL:
            break
        if time.monotonic() - started > args.timeout:
            line.end()
            print(f"gave up after {args.timeout:g} s; the job is still {status}", file=sys.stderr)
            return EXIT_TIMEOUT
        # Between polls the elapsed time still moves on a terminal, so a long job never looks frozen.
        next_poll = time.monotonic() + args.interval
        while (left := next_poll - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            line.tick(time.monotonic() - started)
    line.end()
    if args.json:
        _print_json(job)
    if status != "DELIVERED":
        error = job.get("error") or {}
        print(f"job {status}: {error.get('code', '?')}: {error.get('message', '')}", file=sys.stderr)
        return EXIT_JOB_FAILED
    if not args.json:
        for output in job.get("outputs") or []:
            print(f"{output['s3_uri']}  {output['size']} bytes  sha256 {output['sha256']}")
    return EXIT_OK


# The way to DELIVERED, for "step n of 6"; what each status means while it lasts.
STAGES = ("ACCEPTED", "SUBMITTING", "QUEUED", "PROCESSING", "COPYING", "DELIVERED")
STAGE_OF = {**{status: n for n, status in enumerate(STAGES, 1)}, "COMPLETED": STAGES.index("COPYING") + 1}
DOING = {
    "ACCEPTED": "waiting its turn to be sent to the gateway",
    "SUBMITTING": "being sent to the gateway",
    "QUEUED": "queued at the gateway",
    "PROCESSING": "generating",
    "COMPLETED": "generated; copying the video to S3",
    "COPYING": "copying the video to S3",
}


class StatusLine:
    """``wait``'s live line on stderr: status, elapsed time and what is known of the job's place.

    On a terminal one line is redrawn in place (``\\r`` and erase-line) and each status change
    leaves its line behind; piped, it writes one plain line per change and nothing in between,
    so a log or a CI run reads as a list of changes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._key: tuple[Any, ...] | None = None
        self._job: dict[str, Any] = {}
        self._previous: str | None = None
        self._drawn = False

    def show(self, job: dict[str, Any], elapsed: float) -> None:
        key = (job["status"], job.get("submit_attempts"), job.get("last_submit_error"))
        changed = key != self._key
        if changed and self._key is not None and job["status"] != self._job.get("status"):
            self._previous = self._job.get("status")
        if changed and self._live and self._drawn:
            self._stream.write("\n")  # the last status's line stays as history
        self._job, self._key = job, key
        if self._live:
            self._draw(elapsed)
        elif changed:
            self._stream.write(self._text(elapsed) + "\n")
            self._stream.flush()

    def tick(self, elapsed: float) -> None:
        if self._live and self._job:
            self._draw(elapsed)

    def end(self) -> None:
        if self._live and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = False

    def _draw(self, elapsed: float) -> None:
        self._stream.write("\r\x1b[2K" + self._text(elapsed))
        self._stream.flush()
        self._drawn = True

    def _text(self, elapsed: float) -> str:
        job = self._job
        status = job["status"]
        arrow = f"{self._previous} -> " if self._previous else ""
        text = f"[{_duration(elapsed):>7}] {job['job_id']}: {arrow}{status}"
        facts = []
        if status in STAGE_OF and status != "DELIVERED":
            facts.append(f"step {STAGE_OF[status]} of {len(STAGES)}")
        if status in DOING:
            facts.append(DOING[status])
        if status == "ACCEPTED" and job.get("submit_attempts"):
            facts.append(f"attempt {job['submit_attempts'] + 1}, last: {job.get('last_submit_error') or '?'}")
        deadline = _seconds_until(job.get("deadline_at"))
        if deadline is not None and status not in TERMINAL:
            facts.append(f"deadline in {_duration(max(deadline, 0))}")
        return text + (f" ({'; '.join(facts)})" if facts else "")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _seconds_until(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment - datetime.now(UTC)).total_seconds()


def _download(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.request("GET", f"/jobs/{args.job_id}", expect=JOB_KEYS)
    if job["status"] != "DELIVERED":
        raise CliError(f"job {args.job_id} is {job['status']}, not DELIVERED: nothing to download", EXIT_JOB_FAILED)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"-o {args.output}: cannot create the directory: {exc.strerror}", EXIT_USAGE) from exc
    for output in job.get("outputs") or []:
        target = args.output / f"{args.job_id}-{Path(output['key']).name}"
        try:
            _fetch(output["download_url"], target, int(output["size"]), str(output["sha256"]))
        except KeyboardInterrupt:
            print(file=sys.stderr)  # end the progress bar's line
            raise CliError(
                f"interrupted; {target}.part is kept. Resume with: pixverse-jobs download {args.job_id}"
                + (f" -o {args.output}" if args.output != Path(".") else ""),
                EXIT_INTERRUPTED,
            ) from None
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror}", EXIT_USAGE) from exc
        print(target)
    return EXIT_OK


# How much of the body each read takes (a test makes it small to cut a download half-way).
DOWNLOAD_CHUNK_BYTES = 1024 * 1024


def _fetch(url: str, target: Path, size: int, sha256: str) -> None:
    """Download ``url`` to ``target`` through ``target.part``, resuming what an earlier run left
    there with a Range request, and rename it only once the whole file's sha256 matches.

    S3 answers a Range GET 206 with Content-Range; a 200 means the range was ignored, and the
    file starts again from zero. A .part longer than the file, or a range S3 refuses (416), is
    discarded the same way."""
    if target.exists() and target.stat().st_size == size and _sha256_of(target) == sha256:
        return  # already downloaded and checked
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    if have < size:
        try:
            _receive(url, partial, have, size)
        except httpx.TransportError as exc:
            raise CliError(
                f"download of {target.name} failed: {type(exc).__name__} ({partial.name} is kept: "
                "run the same command again to resume)",
                EXIT_NETWORK,
            ) from exc
    got = _sha256_of(partial)
    if got != sha256:
        partial.unlink(missing_ok=True)
        raise CliError(f"{target.name}: sha256 mismatch (got {got}, the job says {sha256}); removed", EXIT_SERVER)
    partial.replace(target)


def _receive(url: str, partial: Path, have: int, size: int) -> None:
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have:
        print(f"resuming {partial.name} from byte {have} of {size}", file=sys.stderr)
    with httpx.stream("GET", url, headers=headers, timeout=60.0) as response:
        if response.status_code == 416 and have:
            partial.unlink()  # what is kept is not a prefix S3 recognises: start again
            return _receive(url, partial, 0, size)
        if response.status_code == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != have:
                raise CliError(
                    f"download answered bytes from {start} when asked from {have}; delete {partial} and retry",
                    EXIT_SERVER,
                )
            mode = "ab"
        elif response.status_code == 200:
            if have:
                print("the server sent the whole file (no range): starting again from zero", file=sys.stderr)
            have, mode = 0, "wb"  # the range was ignored: the whole file comes
        else:
            hint = " (the link may have expired: run download again)" if response.status_code == 403 else ""
            raise CliError(f"download of {partial.name[:-5]} answered HTTP {response.status_code}{hint}", EXIT_SERVER)
        received = have
        with partial.open(mode) as out:
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                _progress(partial.name[:-5], received, size)
    print(file=sys.stderr)
    return None


def _range_start(content_range: str | None) -> int | None:
    """The first byte of ``bytes START-END/SIZE``."""
    try:
        return int((content_range or "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress(name: str, received: int, size: int) -> None:
    width = 30
    share = received / size if size else 1.0
    bar = "#" * int(width * share)
    print(f"\r{name} [{bar:<{width}}] {share:6.1%} {received / 1048576:8.1f} MiB", end="", file=sys.stderr, flush=True)


def _cancel(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.request("POST", f"/jobs/{args.job_id}/cancel", expect=JOB_KEYS)
    if args.json:
        _print_json(job)
        return EXIT_OK
    billed = {
        "not_sent": "it was never sent to the gateway: nothing billed",
        "accepted": "the gateway has no cancel: the generation may still be billed",
        "unknown": "its submit may have reached the gateway: it may still be billed",
    }.get(job.get("submit_outcome", ""), "")
    print(f"cancelled {job['job_id']}" + (f" ({billed})" if billed else ""))
    return EXIT_OK


def _replay(client: ApiClient, args: argparse.Namespace) -> int:
    if bool(args.job_ids) == bool(args.since):
        raise CliError("replay takes JOB_ID... or --since ISO (one of the two)", EXIT_USAGE)
    if args.status and not args.since:
        raise CliError("--status goes with --since", EXIT_USAGE)
    job_ids = args.job_ids or _ended_since(client, _iso(args.since), args.status)
    failed = 0
    for job_id in job_ids:
        try:
            answer = client.request("POST", f"/jobs/{job_id}/replay", expect=("event_type", "event_id"))
        except CliError as exc:
            if exc.exit_code in (EXIT_NETWORK, EXIT_NOT_API):
                raise  # not this job's trouble: every other would fail the same way
            failed += 1
            print(f"{job_id}: not replayed: {exc.message}", file=sys.stderr)
            continue
        if args.json:
            _print_json(answer)
        else:
            print(f"{job_id}  {answer['event_type']}  {answer['event_id']}")
    if not job_ids:
        print("no ended job matches", file=sys.stderr)
    return EXIT_API if failed else EXIT_OK


def _iso(text: str) -> str:
    """``text`` as the API writes times (UTC, ``Z``), for comparing with created_at."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(f"--since: not an ISO 8601 time: {text!r} (e.g. 2026-12-07T09:00:00Z)", EXIT_USAGE) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ended_since(client: ApiClient, since: str, status: str | None) -> list[str]:
    """The caller's ended jobs created at or after ``since``, oldest first (the listing is newest
    first, so it stops at the first older job)."""
    params = {"limit": "100", **({"status": status} if status else {})}
    found: list[str] = []
    token = None
    while True:
        page = client.request(
            "GET", "/jobs", params={**params, **({"next_token": token} if token else {})}, expect=("jobs",)
        )
        for job in page["jobs"]:
            if job["created_at"] < since:
                return found[::-1]
            if job["status"] in TERMINAL:
                found.append(job["job_id"])
        token = page.get("next_token")
        if not token:
            return found[::-1]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# ----------------------------------------------------------------------------------- images from S3 and uploads
def _add_upload_commands(commands: Any, submit: argparse.ArgumentParser) -> None:
    """``upload FILE`` and ``submit --image FILE`` (POST /uploads, then the presigned PUT)."""
    upload = commands.add_parser("upload", help="upload an input image; prints its s3:// image_url")
    upload.add_argument("file", type=Path, help="a JPEG, PNG or WebP image (its type is read from its bytes)")
    submit.add_argument("--image", type=Path, metavar="FILE", help="upload FILE and use it as image_url")


def _upload(client: ApiClient, args: argparse.Namespace) -> int:
    print(upload_file(client, args.file))
    return EXIT_OK


UPLOAD_COMMANDS = {"upload": _upload}


def upload_file(client: ApiClient, path: Path) -> str:
    """Upload ``path`` through POST /uploads and its presigned PUT; its ``s3://`` image_url."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from exc
    content_type = sniff_image_type(data[:SNIFF_BYTES])
    if content_type is None:
        raise CliError(f"{path} is not a JPEG, PNG or WebP image (read from its first bytes)", EXIT_USAGE)
    if not 1 <= len(data) <= MAX_INPUT_IMAGE_BYTES:
        raise CliError(f"{path} is {len(data)} bytes; at most {MAX_INPUT_IMAGE_BYTES} are accepted", EXIT_USAGE)
    upload = client.request(
        "POST",
        "/uploads",
        body={"content_type": content_type, "size": len(data)},
        expect=("upload_url", "headers", "image_url"),
    )
    try:
        # A plain PUT: the URL carries its own signature (a SigV4 header on top would be refused).
        response = httpx.put(upload["upload_url"], content=data, headers=upload["headers"], timeout=120.0)
    except httpx.TransportError as exc:
        raise CliError(f"cannot reach the upload URL: {type(exc).__name__}", EXIT_NETWORK) from exc
    if not response.is_success:
        raise CliError(f"upload refused: HTTP {response.status_code} {response.text[:200]}", EXIT_API)
    image_url: str = upload["image_url"]
    return image_url


if __name__ == "__main__":
    sys.exit(main())
