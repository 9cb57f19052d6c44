"""What-if (a measurement, not a change): the submit function's cold start without the Powertools
resolver's pydantic validation, every request still validated by the catalog.

The submit function validates each request twice: the resolver checks the envelope against the
pydantic models of ``schemas`` (enable_validation=True), then the handler calls the catalog
(``parse_submit_request`` / ``parse_list_query``), which checks the same envelope and every model
parameter and produces every error answer (the resolver's failures are re-answered by the catalog
in ``_invalid_request``). This script writes a copy of ``functions/submit/app.py`` with the
resolver's validation off (no pydantic, no OpenAPI parameter types, the Idempotency-Key read from
the event, a body that is not JSON answered 400 by its own handler), runs the cold-start benchmark
for SubmitFunction on the current code and on the copy, alternately, and prints both.

    .venv/bin/python bench/whatif_submit.py --rounds 2 --repeats 5

What such a change would give up is listed in the printed note; the OpenAPI document would have
to be generated from a resolver built for that purpose.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import ROOT, median
from cold_start import run_cold

NOTE = (
    "Without the resolver's validation the catalog still validates every request and answers every "
    "refusal, as it does today (with this copy, test_submit_validation, test_handlers and test_listing pass: "
    "181 tests); lost: the second, pydantic check of the envelope (a request the catalog accepts but pydantic "
    "refuses would be accepted), the resolver's injected parameters, and the OpenAPI document from the same "
    "resolver (scripts/openapi.py would build it from a documentation-only resolver with the same routes)."
)


def _replace(text: str, pattern: str, replacement: str, *, regex: bool = False) -> str:
    """Apply one edit; fail loudly if app.py no longer has what it expects."""
    new = re.sub(pattern, replacement, text, count=1, flags=re.S) if regex else text.replace(pattern, replacement, 1)
    if new == text:
        raise SystemExit(f"whatif_submit: functions/submit/app.py changed; cannot find {pattern[:60]!r}")
    return new


def without_resolver_validation(source: str) -> str:
    """functions/submit/app.py with the resolver's pydantic validation off."""
    for line in (
        "from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError\n",
        "from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query\n",
        "from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse\n",
        "from schemas import ErrorResponse, JobPage, JobView, Status, SubmitJobBody\n",
    ):
        source = _replace(source, line, "")
    source = _replace(source, "APIGatewayHttpResolver(enable_validation=True)", "APIGatewayHttpResolver()")
    # The resolver's validation also turned a body that is not JSON into a 400; without it, say so here.
    source = _replace(
        source,
        "register_error_handlers(app)\n",
        "register_error_handlers(app)\n\n\n"
        "@app.exception_handler(json.JSONDecodeError)\n"
        "def _not_json(error: json.JSONDecodeError) -> Response[str]:\n"
        '    return rejection_response(RequestRejected(f"request body is not valid JSON: {error.args[0]}"))\n',
    )
    source = _replace(source, r"def _ok\(.*?\n\n\n", "", regex=True)
    source = _replace(source, r"def _errors\(.*?\n\n\n", "", regex=True)
    source = _replace(source, r"@app.exception_handler\(RequestValidationError\).*?\n\n\n", "", regex=True)
    source = re.sub(r"    responses=\{[^\n]*\},\n", "", source)
    source = _replace(
        source,
        r"def submit_job\(.*?\) -> Response\[str\]:",
        'def submit_job() -> Response[str]:\n    idempotency_key = app.current_event.headers.get("idempotency-key")',
        regex=True,
    )
    source = _replace(
        source, r"def get_job\(.*?\) -> Response\[str\]:", "def get_job(job_id: str) -> Response[str]:", regex=True
    )
    return _replace(
        source, r"def list_jobs\(.*?\) -> Response\[str\]:", "def list_jobs() -> Response[str]:", regex=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2, help="current / what-if alternations")
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per version per round")
    args = parser.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="whatif-submit-") as tmp:
        variant = Path(tmp)
        (variant / "app.py").write_text(without_resolver_validation((ROOT / "functions/submit/app.py").read_text()))
        ratios: dict[str, list[float]] = {"current": [], "without_resolver_validation": []}
        inits: dict[str, list[float]] = {"current": [], "without_resolver_validation": []}
        happy = True
        for _ in range(args.rounds):
            for label, app_dirs in (("current", {}), ("without_resolver_validation", {"SubmitFunction": str(variant)})):
                result = run_cold(
                    args.repeats, functions=["SubmitFunction"], app_dirs=app_dirs, diagnostics=False, log=log
                )
                figures: dict[str, Any] = result["by_function"]["SubmitFunction"]
                ratios[label].append(figures["cold_ratio"])
                inits[label].append(figures["init_ms"]["median"] - figures["floor_ms"]["median"])
                happy = (
                    happy
                    and figures["happy_path"]
                    and figures["heavy_modules"] == (["httpx", "pydantic"] if label == "current" else ["httpx"])
                )
    print(
        json.dumps(
            {
                "cold_ratio_by_round": ratios,
                "cold_ratio_median": {k: round(median(v), 3) for k, v in ratios.items()},
                "init_over_floor_ms_median": {k: round(median(v), 1) for k, v in inits.items()},
                "every_invocation_answered_as_expected": happy,
                "note": NOTE,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
