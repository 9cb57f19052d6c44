"""``python -m pixverse_local``: run the local stack in the foreground until Ctrl-C or SIGTERM.

stdout carries exactly one line, ``ready: api=... aws=... gateway=... table=... bucket=... topic=...
bus=... queue=... dlq=...``, once everything answers. Everything else (this module's logs, the functions'
logs and prints) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from pixverse_local.aws.provision import ProvisionError
from pixverse_local.aws.template import TemplateError
from pixverse_local.stack import DEFAULT_STACK_NAME, LocalStack, LocalStackError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pixverse_local", description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="template.yaml", help="SAM template (default ./template.yaml)")
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help="prefix of physical resource names")
    parser.add_argument(
        "--api-port", type=int, default=None, help="port of the local HTTP API (default LOCAL_API_PORT or 3000)"
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="Name=Value",
        help="template parameter values, as `sam deploy --parameter-overrides` takes them",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOCAL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the stack, print the ready line, wait for a stop signal, stop everything."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)  # one line per client otherwise
    log = logging.getLogger("pixverse_local")
    malformed = [item for item in args.parameter_overrides if "=" not in item]
    if malformed:
        log.error("--parameter-overrides takes Name=Value, got %s", ", ".join(malformed))
        return 2
    overrides = dict(item.split("=", 1) for item in args.parameter_overrides)

    # Functions log to stdout in Lambda; here stdout is reserved for the ready line.
    ready_out = sys.stdout
    sys.stdout = sys.stderr

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    stack = LocalStack(args.template, stack_name=args.stack_name, api_port=args.api_port, parameter_overrides=overrides)
    try:
        stack.start()
    except (LocalStackError, TemplateError, ProvisionError, OSError) as exc:
        log.error("local stack did not start: %s", exc)
        return 1
    try:
        print(stack.ready_line(), file=ready_out, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
        log.info("local stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
