"""Run the gateway simulator on its own: ``python -m pixverse_local.gateway_sim --port 8090 --api-key KEY``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Final

from pixverse_local.gateway_sim.server import GatewaySimulator

__all__ = ["main"]

API_KEY_ENV: Final = "PIXAZO_API_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM; print ``simulator: <url>`` once it listens."""
    parser = argparse.ArgumentParser(
        prog="python -m pixverse_local.gateway_sim",
        description="A local stand-in for the Pixazo gateway's PixVerse models.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"the key callers must send (default ${API_KEY_ENV})",
    )
    parser.add_argument("--allow-http-webhooks-on-loopback", action="store_true")
    parser.add_argument("--queue-seconds", type=float, default=0.2)
    parser.add_argument("--processing-seconds", type=float, default=0.6)
    parser.add_argument("--poll-interval-seconds", type=float, default=0.2)
    parser.add_argument(
        "--media-size", type=int, default=None, help="media of exactly this many bytes (default: the clip's own size)"
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="admit only this many requests at once (QUEUED or PROCESSING), 429 beyond (default: no limit)",
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        default=None,
        help="seconds to send as Retry-After with the admission limit's 429 (default: none, as the doc shows none)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error(f"--api-key (or ${API_KEY_ENV}) is required")
    if args.max_in_flight is not None and args.max_in_flight < 1:
        parser.error(f"--max-in-flight must be at least 1, got {args.max_in_flight}")
    if args.retry_after is not None and args.retry_after < 0:
        parser.error(f"--retry-after must be at least 0, got {args.retry_after}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    simulator = GatewaySimulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        allow_http_webhooks_on_loopback=args.allow_http_webhooks_on_loopback,
        queue_seconds=args.queue_seconds,
        processing_seconds=args.processing_seconds,
        poll_interval_seconds=args.poll_interval_seconds,
        media_size=args.media_size,
        max_in_flight=args.max_in_flight,
        retry_after_seconds=args.retry_after,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    url = simulator.start()
    print(f"simulator: {url}", flush=True)  # the one line a parent process waits for
    try:
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
