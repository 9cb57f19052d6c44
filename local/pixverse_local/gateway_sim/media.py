"""Media: ``GET /media/{request_id}/{n}.mp4`` and the deterministic bytes it serves.

A completed request's media is a real, playable H.264 MP4 (``clips.py``): colour bars, a timer and
the prompt's words, its width, height and duration following the request's ``resolution``,
``aspect_ratio`` and ``duration``. Its size is the clip's own unless the simulator was started with a
``media_size`` or the prompt says ``[sim:size=BYTES]``; then the item is exactly that many bytes and
still an MP4 the copier accepts:

- when the clip fits, the clip followed by a ``free`` box (a box every MP4 reader skips) filling up to
  the size: the file still plays;
- when it does not (sizes below the clip's few tens of KiB), a container carrying the clip's facts
  (``ftyp``, a ``moov`` with its duration, size and codec, but no frames) and an ``mdat`` of filler:
  not playable, but a video container with the right facts;
- below that container's ~600 bytes, its first ``size`` bytes (no longer a complete MP4: the copier
  refuses it).

Filler bytes (inside ``free`` or ``mdat``) come in 64 KiB blocks drawn from SHAKE-256 seeded with the
item's identity, each with its index written over its first eight bytes, so every block differs, any
byte range can be produced without the bytes before it, and multi-GiB items stream at memory speed
without ever being held in memory. ``[sim:media-body=html]`` serves an HTML error page instead (still
labelled ``video/mp4`` unless ``[sim:content-type=...]`` says otherwise): the copier must refuse it.

Single byte ranges are honoured. Directives change the answer (``[sim:cut=N]``, ``[sim:no-ranges]``,
``[sim:redirect=URL]``, ``[sim:hops=N]``, ``[sim:media-status=CODE]``, ``[sim:content-type=TYPE]``,
``[sim:media-body=html]``), as does an injected ``media_get_status`` fault; every GET is recorded on the
request (``media_requests``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from pixverse_local.gateway_sim.clips import CLIP_CODEC, ClipSpec, clip_bytes, clip_spec_for
from pixverse_local.gateway_sim.faults import Fault, answer_fault
from pixverse_local.gateway_sim.httpio import JsonHandler
from pixverse_local.gateway_sim.lifecycle import MEDIA_TYPE, GatewayState, Request, utc_now

__all__ = [
    "MEDIA_PATH_RE",
    "MediaItem",
    "iter_media_chunks",
    "media_bytes",
    "media_item",
    "media_sha256",
    "serve_media",
    "skeleton_mp4",
]

logger = logging.getLogger(__name__)

MEDIA_BLOCK_SIZE = 64 * 1024
_COUNTER_BYTES = 8
# The facts of a sized item that names no clip (unit tests' media_bytes("unit", 0, size)).
DEFAULT_CLIP: Final = ClipSpec(width=1280, height=720, duration=5)
HTML_PAGE: Final = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The CDN could not reach the origin.</p></body></html>\n"
)


@functools.lru_cache(maxsize=128)
def _base_block(request_id: str, n: int) -> bytes:
    seed = f"pixazo-simulator/media/{request_id}/{n}".encode()
    return hashlib.shake_256(seed).digest(MEDIA_BLOCK_SIZE)


def _block(base: bytes, index: int) -> bytes:
    return index.to_bytes(_COUNTER_BYTES, "big") + base[_COUNTER_BYTES:]


def _box(box_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), box_type) + payload


def _box_header(box_type: bytes, total: int) -> bytes:
    """The header of a box ``total`` bytes long, header included (64-bit size when it must be)."""
    if total < 1 << 32:
        return struct.pack(">I4s", total, box_type)
    return struct.pack(">I4sQ", 1, box_type, total)


@functools.lru_cache(maxsize=64)
def skeleton_mp4(width: int, height: int, duration: int, codec: str = CLIP_CODEC) -> bytes:
    """``ftyp`` and a ``moov`` stating one video track of ``width`` x ``height`` pixels, ``duration``
    seconds and ``codec`` (a sample entry of that type), with empty sample tables: a container's facts
    without frames, for items too small to hold the real clip."""
    timescale = 1000
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">4xIIII", 0, 0, timescale, duration * timescale)
        + struct.pack(">IH10x", 0x10000, 0x100)
        + matrix
        + bytes(24)
        + struct.pack(">I", 2),
    )
    tkhd = _box(
        b"tkhd",
        struct.pack(">I5I", 3, 0, 0, 1, 0, duration * timescale)
        + bytes(8)
        + struct.pack(">hhhH", 0, 0, 0, 0)
        + matrix
        + struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _box(b"mdhd", struct.pack(">4xIIIIHH", 0, 0, timescale, duration * timescale, 0x55C4, 0))
    hdlr = _box(b"hdlr", struct.pack(">4xI4s12x", 0, b"vide") + b"VideoHandler\0")
    entry = _box(
        codec.encode("ascii"),
        bytes(6)
        + struct.pack(">H", 1)
        + bytes(16)
        + struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1)
        + bytes(32)
        + struct.pack(">hh", 0x18, -1),
    )
    stsd = _box(b"stsd", struct.pack(">4xI", 1) + entry)
    empty_tables = b"".join(_box(name, struct.pack(">4xI", 0)) for name in (b"stts", b"stsc", b"stco"))
    stsz = _box(b"stsz", struct.pack(">4xII", 0, 0))
    stbl = _box(b"stbl", stsd + empty_tables + stsz)
    minf = _box(b"minf", _box(b"vmhd", struct.pack(">I4H", 1, 0, 0, 0, 0)) + stbl)
    trak = _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf))
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    return ftyp + _box(b"moov", mvhd + trak)


@dataclass(frozen=True)
class MediaItem:
    """One media item: whose (``request_id``, ``n``), what clip, its size (None: the clip's own) and
    body (``video``, or ``html`` for an error page served as if it were the video)."""

    request_id: str
    n: int
    size: int | None = None
    clip: ClipSpec | None = None
    body: str = "video"

    @functools.cached_property
    def _prefix(self) -> bytes:
        """The bytes held in memory at the start of the item; filler blocks follow up to ``length``."""
        if self.body == "html":
            return HTML_PAGE
        if self.size is None:
            return clip_bytes(self.clip or DEFAULT_CLIP)
        if self.clip is not None:
            clip = clip_bytes(self.clip)
            room = self.size - len(clip)
            if room == 0:
                return clip
            if room >= 8:
                return clip + _box_header(b"free", room)
        spec = self.clip or DEFAULT_CLIP
        head = skeleton_mp4(spec.width, spec.height, spec.duration)
        room = self.size - len(head)
        if room >= 8:
            return head + _box_header(b"mdat", room)
        return head[: self.size]

    @property
    def length(self) -> int:
        return len(self._prefix) if self.size is None else self.size

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` in chunks of at most ``MEDIA_BLOCK_SIZE`` bytes."""
        size = self.length
        stop = size if end is None else min(end, size)
        if start < 0 or start > stop:
            raise ValueError("invalid byte range")
        prefix = self._prefix
        position = start
        while position < min(stop, len(prefix)):
            take = min(MEDIA_BLOCK_SIZE, min(stop, len(prefix)) - position)
            yield prefix[position : position + take]
            position += take
        base = _base_block(self.request_id, self.n) if position < stop else b""
        while position < stop:
            index, offset = divmod(position, MEDIA_BLOCK_SIZE)
            take = min(MEDIA_BLOCK_SIZE - offset, stop - position)
            yield _block(base, index)[offset : offset + take]
            position += take

    def sha256(self) -> str:
        return _item_sha256(self)


@functools.lru_cache(maxsize=1024)
def _item_sha256(item: MediaItem) -> str:
    digest = hashlib.sha256()
    for chunk in item.chunks():
        digest.update(chunk)
    return digest.hexdigest()


def media_item(record: Request, n: int) -> MediaItem:
    """Media item ``n`` of ``record``: its clip from the submit body, its size and body from the
    directives (or the simulator's ``media_size``)."""
    return MediaItem(
        request_id=record.request_id,
        n=n,
        size=record.media_size,
        clip=clip_spec_for(record.body),
        body=record.directives.media_body,
    )


def iter_media_chunks(
    request_id: str, n: int, size: int, start: int = 0, end: int | None = None, *, clip: ClipSpec | None = None
) -> Iterator[bytes]:
    """Yield the bytes ``[start, end)`` of the ``size``-byte media item ``n`` of ``request_id``
    (``end`` defaults to ``size``); ``clip`` is the request's (``clip_spec_for(body)``), if any."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return MediaItem(request_id, n, size, clip).chunks(start, end)


def media_bytes(request_id: str, n: int, size: int, *, clip: ClipSpec | None = None) -> bytes:
    """Return media item ``n`` of ``request_id`` in full (for small sizes in tests)."""
    return b"".join(iter_media_chunks(request_id, n, size, clip=clip))


def media_sha256(request_id: str, n: int, size: int, *, clip: ClipSpec | None = None) -> str:
    """Return the hex SHA-256 of media item ``n`` of ``request_id`` when it is ``size`` bytes long."""
    return MediaItem(request_id, n, size, clip).sha256()


# --- serving media: GET /media/{request_id}/{n}.mp4 ------------------------------------------------

MEDIA_PATH_RE: Final = re.compile(r"^/media/([^/]+)/(\d+)\.mp4$")
_RANGE_RE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class MediaPlan:
    """The answer to one media request: a redirect, an error status, or (a range of) the bytes."""

    redirect: str | None = None
    status: int | None = None
    item: MediaItem | None = None
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
            item=media_item(record, n),
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
    if plan.item is None:
        raise RuntimeError("a media plan that serves bytes names its item")
    item, cut = plan.item, plan.cut
    size = item.length  # a clip not made yet is made here (once per clip; cached on disk)
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
    for chunk in item.chunks(start, stop_at):
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
