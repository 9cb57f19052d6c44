"""Media: ``GET /media/{request_id}/{n}.mp4`` and the deterministic bytes it serves.

A media item is identified by ``(request_id, n)`` and has a size in bytes. Its content is a 64 KiB
block drawn from SHAKE-256 seeded with the identity, repeated with the block's index written over its
first eight bytes, so every block differs, any byte range can be produced without the bytes before it,
and multi-GiB items stream at memory speed without ever being held in memory. Single byte ranges are
honoured. Directives change the answer (``[sim:cut=N]``, ``[sim:no-ranges]``, ``[sim:redirect=URL]``,
``[sim:hops=N]``, ``[sim:media-status=CODE]``, ``[sim:content-type=TYPE]``), as does an injected
``media_get_status`` fault; every GET is recorded on the request (``media_requests``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from pixverse_local.gateway_sim.faults import Fault, answer_fault
from pixverse_local.gateway_sim.httpio import JsonHandler
from pixverse_local.gateway_sim.lifecycle import MEDIA_TYPE, GatewayState, utc_now

__all__ = ["MEDIA_PATH_RE", "iter_media_chunks", "media_bytes", "media_sha256", "serve_media"]

logger = logging.getLogger(__name__)

MEDIA_BLOCK_SIZE = 64 * 1024
_COUNTER_BYTES = 8


@functools.lru_cache(maxsize=128)
def _base_block(request_id: str, n: int) -> bytes:
    seed = f"pixazo-simulator/media/{request_id}/{n}".encode()
    return hashlib.shake_256(seed).digest(MEDIA_BLOCK_SIZE)


def _block(base: bytes, index: int) -> bytes:
    return index.to_bytes(_COUNTER_BYTES, "big") + base[_COUNTER_BYTES:]


def iter_media_chunks(request_id: str, n: int, size: int, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Yield the bytes ``[start, end)`` of media item ``n`` of ``request_id`` (``end`` defaults to ``size``).

    Chunks are at most ``MEDIA_BLOCK_SIZE`` bytes; concatenated they are exactly ``end - start`` bytes.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    stop = size if end is None else min(end, size)
    if start < 0 or start > stop:
        raise ValueError("invalid byte range")
    base = _base_block(request_id, n)
    position = start
    while position < stop:
        index, offset = divmod(position, MEDIA_BLOCK_SIZE)
        take = min(MEDIA_BLOCK_SIZE - offset, stop - position)
        yield _block(base, index)[offset : offset + take]
        position += take


def media_bytes(request_id: str, n: int, size: int) -> bytes:
    """Return media item ``n`` of ``request_id`` in full (for small sizes in tests)."""
    return b"".join(iter_media_chunks(request_id, n, size))


@functools.lru_cache(maxsize=1024)
def media_sha256(request_id: str, n: int, size: int) -> str:
    """Return the hex SHA-256 of media item ``n`` of ``request_id`` when it is ``size`` bytes long."""
    digest = hashlib.sha256()
    for chunk in iter_media_chunks(request_id, n, size):
        digest.update(chunk)
    return digest.hexdigest()


# --- serving media: GET /media/{request_id}/{n}.mp4 ------------------------------------------------

MEDIA_PATH_RE: Final = re.compile(r"^/media/([^/]+)/(\d+)\.mp4$")
_RANGE_RE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class MediaPlan:
    """The answer to one media request: a redirect, an error status, or (a range of) the bytes."""

    redirect: str | None = None
    status: int | None = None
    size: int = 0
    cut: bool = False
    content_type: str = MEDIA_TYPE
    ranges: bool = True
    fault: Fault | None = None  # an injected media fault answers instead of the bytes
    delay_seconds: float = 0.0  # a delay-only media fault (status 200): the bytes, only late


def plan_media(
    state: GatewayState, request_id: str, n: int, *, hop: int, byte_range: str | None, head: bool
) -> MediaPlan | None:
    """How to answer a media GET (or HEAD), or None when the item does not exist (yet). A GET
    is recorded; one that serves bytes counts in ``media_gets`` and may be cut."""
    with state.lock:
        record = state.requests.get(request_id)
        if record is None or record.status != "COMPLETED" or n >= record.directives.media_count:
            return None
        directives = record.directives
        fault = None if head else state.take_fault_locked("media_get_status")
        if not head:
            entry: dict[str, Any] = {"n": n, "hop": hop, "range": byte_range, "at": utc_now()}
            if fault is not None:
                entry["fault"] = fault.status
            record.media_requests.append(entry)
        delay = 0.0
        if fault is not None and fault.answers_normally:
            delay, fault = fault.delay_seconds, None
        if fault is not None:
            return MediaPlan(fault=fault)
        if directives.redirect is not None:
            return MediaPlan(redirect=directives.redirect)
        if hop < directives.hops:
            return MediaPlan(redirect=f"/media/{request_id}/{n}.mp4?hop={hop + 1}")
        if directives.media_status is not None:
            return MediaPlan(status=directives.media_status)
        cut = False
        if not head:
            record.media_gets += 1
            cut = record.cuts_remaining > 0
            if cut:
                record.cuts_remaining -= 1
        return MediaPlan(
            delay_seconds=delay,
            size=record.media_size,
            cut=cut,
            content_type=directives.content_type or MEDIA_TYPE,
            ranges=directives.ranges,
        )


def serve_media(handler: JsonHandler, state: GatewayState, request_id: str, n: int) -> None:
    """``GET`` / ``HEAD /media/{request_id}/{n}.mp4``: as the plan says, streaming the bytes."""
    head = handler.command == "HEAD"
    if not head:
        state.bump("media_gets")
    hop_text = dict(parse_qsl(urlsplit(handler.path).query)).get("hop", "0")
    plan = plan_media(
        state,
        request_id,
        n,
        hop=int(hop_text) if hop_text.isdigit() else 0,
        byte_range=handler.headers.get("Range"),
        head=head,
    )
    if plan is None:
        handler.not_found("Media not found")
        return
    if plan.redirect is not None:
        handler.send_response(302)
        handler.send_header("Location", plan.redirect)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    if plan.fault is not None:
        answer_fault(handler, plan.fault, state.stop)
        return
    if plan.status is not None:
        handler.send_error_body(plan.status, "Media Error", f"media answered {plan.status} on request")
        return
    if plan.delay_seconds:
        state.stop.wait(plan.delay_seconds)
    size, cut = plan.size, plan.cut
    byte_range = _byte_range(handler, size) if plan.ranges else (0, size, False)
    if byte_range is None:
        return
    start, end, partial = byte_range
    length = end - start
    handler.send_response(206 if partial else 200)
    handler.send_header("Content-Type", plan.content_type)
    handler.send_header("Content-Length", str(length))
    if plan.ranges:
        handler.send_header("Accept-Ranges", "bytes")
    if partial:
        handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
    handler.end_headers()
    if handler.command == "HEAD":
        return
    stop_at = start + length // 2 if cut else end
    for chunk in iter_media_chunks(request_id, n, size, start, stop_at):
        handler.wfile.write(chunk)
    if cut:
        # Content-Length promised the whole body: closing now is a connection cut half-way.
        handler.close_connection = True
        logger.info("media connection cut", extra={"request_id": request_id, "n": n})


def _byte_range(handler: JsonHandler, size: int) -> tuple[int, int, bool] | None:
    """``(start, end, partial)`` for the Range header; None after answering 416."""
    header = handler.headers.get("Range")
    if not header:
        return 0, size, False
    match = _RANGE_RE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return 0, size, False  # unsupported forms (several ranges) get the whole item
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if start >= size or start >= end:
        handler.send_json(
            416,
            {"error": "Range Not Satisfiable", "message": "range"},
            {"Content-Range": f"bytes */{size}"},
        )
        return None
    return start, end, True
