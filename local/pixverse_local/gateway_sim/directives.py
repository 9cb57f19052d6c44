"""Prompt directives: ``[sim:...]`` markers anywhere in a prompt choose how that request behaves.

Outcome: ``[sim:fail]`` (FAILED), ``[sim:error]`` (ERROR). Callbacks: ``[sim:dup=N]`` (the final callback
N times at once), ``[sim:no-callback]``. Media: ``[sim:size=BYTES]``, ``[sim:media=N]``, ``[sim:cut=N]``
(the first N downloads drop half-way), ``[sim:no-ranges]``, ``[sim:media-url=URL]`` (listed instead of the
simulator's media), ``[sim:redirect=URL]``, ``[sim:hops=N]``, ``[sim:media-status=CODE]``,
``[sim:content-type=TYPE]``, ``[sim:media-body=html]`` (an HTML error page instead of the video).
Timing: ``[sim:seconds=N]`` (the generation takes N seconds from submit to its
outcome, instead of the simulator's queue + processing times). A bad directive is a 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pixverse_local.gateway_sim.params import is_http_url

__all__ = ["Directives", "Outcome", "parse_directives"]

_DIRECTIVE_RE: Final = re.compile(r"\[sim:([a-z-]+)(?:=([^\]]*))?\]")
_DIRECTIVE_LIMITS: Final[Mapping[str, tuple[int, int]]] = {
    "dup": (1, 50),
    "size": (0, 1 << 42),
    "media": (1, 32),
    "cut": (0, 1000),
    "hops": (0, 10),
    "media-status": (400, 599),
    "seconds": (0, 3600),
}
_MEDIA_BODIES: Final = ("video", "html")
_URL_DIRECTIVES: Final = ("media-url", "redirect")
_CONTENT_TYPE_RE: Final = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")

Outcome = Literal["COMPLETED", "FAILED", "ERROR"]


@dataclass(frozen=True)
class Directives:
    """How a request should behave, parsed from ``[sim:...]`` markers in its prompt."""

    outcome: Outcome = "COMPLETED"
    duplicates: int = 1
    no_callback: bool = False
    media_size: int | None = None
    media_count: int = 1
    cut: int = 0
    media_url: str | None = None
    redirect: str | None = None
    hops: int = 0
    media_status: int | None = None
    content_type: str | None = None
    ranges: bool = True
    seconds: int | None = None
    media_body: str = "video"


def parse_directives(prompt: str) -> Directives:
    """Parse the ``[sim:...]`` directives of ``prompt``; raise ``ValueError`` naming a bad one."""
    outcome: Outcome = "COMPLETED"
    numbers: dict[str, int] = {}
    texts: dict[str, str] = {}
    no_callback = False
    ranges = True
    for match in _DIRECTIVE_RE.finditer(prompt):
        name, raw = match.group(1), match.group(2)
        if name in ("fail", "error", "no-callback", "no-ranges"):
            if raw is not None:
                raise ValueError(f"directive {match.group(0)} takes no value")
            if name == "no-callback":
                no_callback = True
            elif name == "no-ranges":
                ranges = False
            else:
                outcome = "FAILED" if name == "fail" else "ERROR"
        elif name in _URL_DIRECTIVES:
            if raw is None or not is_http_url(raw):
                raise ValueError(f"directive {match.group(0)} needs an http(s) URL")
            texts[name] = raw
        elif name == "content-type":
            if raw is None or not _CONTENT_TYPE_RE.match(raw.lower()):
                raise ValueError(f"directive {match.group(0)} needs a media type such as text/html")
            texts[name] = raw.lower()
        elif name == "media-body":
            if raw not in _MEDIA_BODIES:
                raise ValueError(f"directive {match.group(0)} needs one of {', '.join(_MEDIA_BODIES)}")
            texts[name] = raw
        elif name in _DIRECTIVE_LIMITS:
            low, high = _DIRECTIVE_LIMITS[name]
            if raw is None or not raw.isdigit() or not low <= int(raw) <= high:
                raise ValueError(f"directive {match.group(0)} needs an integer between {low} and {high}")
            numbers[name] = int(raw)
        else:
            raise ValueError(f"unknown directive {match.group(0)}")
    return Directives(
        outcome=outcome,
        duplicates=numbers.get("dup", 1),
        no_callback=no_callback,
        media_size=numbers.get("size"),
        media_count=numbers.get("media", 1),
        cut=numbers.get("cut", 0),
        media_url=texts.get("media-url"),
        redirect=texts.get("redirect"),
        hops=numbers.get("hops", 0),
        media_status=numbers.get("media-status"),
        content_type=texts.get("content-type"),
        ranges=ranges,
        seconds=numbers.get("seconds"),
        media_body=texts.get("media-body", "video"),
    )
