"""Reading an MP4's facts as its bytes stream past: an ISO-BMFF (ISO/IEC 14496-12) box walker.

The copier feeds every downloaded chunk to ``Mp4Walker.feed`` and asks ``Mp4Walker.finish`` for the
facts before the object is made to appear. No extra download and bounded memory: the walker keeps
only the top-level box header it is reading and the ``moov`` box (the movie's index: a few KiB for a
clip, capped at ``MAX_MOOV_BYTES``); ``mdat`` and every other payload is counted and skipped. ``moov``
may come before ``mdat`` (a "faststart" file) or after it.

What it checks, and why: the gateway's declared type cannot be trusted (the V5.6 models declare
``application/octet-stream``, and an HTML error page can be served as ``video/mp4``), so the container
itself decides. The first box must be ``ftyp`` (refused at once, after 8 bytes, otherwise), every
top-level box header must be sane, the file must end on a box boundary, and a ``moov`` with a video
track must be there by the end. Anything else raises ``MediaNotVideo``.

What it reads: ``mvhd`` (timescale and duration: the movie's length), the first video track's
(``hdlr`` = ``vide``) ``tkhd`` (width and height, 16.16 fixed point; the sample entry's own size when
the header says 0) and its ``stsd`` sample entry type, the codec's fourcc (``avc1``, ``hvc1``,
``hev1``, ``av01``, ``vp09``, ...). Pure Python, no dependency: it runs in the copier's Lambda.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from pixverse_jobs.errors import MediaNotVideo

__all__ = ["MAX_MOOV_BYTES", "Mp4Walker", "VideoFacts", "read_facts"]

MAX_MOOV_BYTES: Final = 16 * 1024 * 1024
_HEADER: Final = 8
_LARGE_HEADER: Final = 16
# Boxes whose children the walker descends into to reach tkhd, hdlr and stsd.
_CONTAINERS: Final = frozenset({b"trak", b"mdia", b"minf", b"stbl"})


@dataclass(frozen=True)
class VideoFacts:
    """What the container says of its video: length in seconds, frame size in pixels, codec fourcc."""

    duration_seconds: float
    width: int
    height: int
    codec: str

    def as_output(self) -> dict[str, Any]:
        return {
            "duration_seconds": self.duration_seconds,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
        }


def _printable(box_type: bytes) -> bool:
    return all(32 <= byte < 127 for byte in box_type)


def _box_name(box_type: bytes) -> str:
    return box_type.decode("ascii") if _printable(box_type) else box_type.hex()


class Mp4Walker:
    """Walks the top-level boxes of one file fed in chunks of any size (see the module docstring)."""

    def __init__(self, *, max_moov_bytes: int = MAX_MOOV_BYTES) -> None:
        self._max_moov = max_moov_bytes
        self._offset = 0  # bytes fed so far
        self._header = bytearray()  # the top-level box header being read
        self._box_type = b""
        self._remaining = 0  # payload bytes of the current box still to come (-1: to the end)
        self._moov: bytearray | None = None  # the moov payload, while it streams
        self._boxes = 0
        self._facts: VideoFacts | None = None

    @property
    def facts(self) -> VideoFacts | None:
        return self._facts

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the file; ``MediaNotVideo`` as soon as they show it is not an MP4."""
        view = memoryview(chunk)
        while view:
            if self._remaining == 0 and self._box_type:
                self._end_box()
            if not self._box_type:
                view = self._read_header(view)
                continue
            take = len(view) if self._remaining < 0 else min(self._remaining, len(view))
            if self._moov is not None:
                self._moov += view[:take]
            if self._remaining > 0:
                self._remaining -= take
            self._offset += take
            view = view[take:]
        if self._remaining == 0 and self._box_type:
            self._end_box()

    def finish(self) -> VideoFacts:
        """The facts, once the whole file has been fed; ``MediaNotVideo`` if it was not a video."""
        if self._header or self._remaining > 0:
            name = _box_name(self._box_type or bytes(self._header[4:8]))
            raise MediaNotVideo(f"media is not a complete MP4: it ends inside box {name!r} at byte {self._offset}")
        if self._boxes == 0:
            raise MediaNotVideo("media is empty, not an MP4 video")
        if self._facts is None:
            raise MediaNotVideo("media has no moov box: not a playable MP4 video")
        return self._facts

    # -- top level
    def _read_header(self, view: memoryview) -> memoryview:
        need = _HEADER if len(self._header) < _HEADER else _LARGE_HEADER
        take = min(need - len(self._header), len(view))
        self._header += view[:take]
        self._offset += take
        view = view[take:]
        if len(self._header) < _HEADER:
            return view
        size, box_type = struct.unpack(">I4s", self._header[:_HEADER])
        if self._boxes == 0 and box_type != b"ftyp":
            raise MediaNotVideo(
                f"media does not start with an MP4 'ftyp' box (first bytes {bytes(self._header[:8])!r}): not a video"
            )
        if not _printable(box_type):
            raise MediaNotVideo(f"media has a malformed box header at byte {self._offset - len(self._header)}")
        if size == 1:
            if len(self._header) < _LARGE_HEADER:
                return view
            size = struct.unpack(">Q", self._header[_HEADER:_LARGE_HEADER])[0]
            header_size = _LARGE_HEADER
        else:
            header_size = _HEADER
        if size != 0 and size < header_size:
            raise MediaNotVideo(f"media has a malformed {_box_name(box_type)!r} box of {size} bytes")
        self._header.clear()
        self._boxes += 1
        self._box_type = box_type
        self._remaining = -1 if size == 0 else size - header_size
        if box_type == b"moov":
            if self._facts is not None:
                raise MediaNotVideo("media has two moov boxes")
            if self._remaining < 0 or self._remaining > self._max_moov:
                raise MediaNotVideo(f"media's moov box is larger than the {self._max_moov} bytes the copier reads")
            self._moov = bytearray()
        return view

    def _end_box(self) -> None:
        if self._moov is not None:
            moov, self._moov = bytes(self._moov), None
            self._facts = _movie_facts(moov)
        self._box_type = b""
        self._remaining = 0


def _children(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, bytes]]:
    """The ``(type, payload)`` of each box in ``data[start:end]``; ``MediaNotVideo`` if malformed."""
    stop = len(data) if end is None else end
    boxes = []
    position = start
    while position + _HEADER <= stop:
        size, box_type = struct.unpack_from(">I4s", data, position)
        header = _HEADER
        if size == 1:
            if position + _LARGE_HEADER > stop:
                break
            size = struct.unpack_from(">Q", data, position + _HEADER)[0]
            header = _LARGE_HEADER
        elif size == 0:
            size = stop - position
        if size < header or position + size > stop:
            raise MediaNotVideo(f"media's moov holds a malformed {_box_name(box_type)!r} box")
        boxes.append((box_type, data[position + header : position + size]))
        position += size
    return boxes


def _movie_facts(moov: bytes) -> VideoFacts:
    timescale, duration = 0, 0
    video: VideoFacts | None = None
    for box_type, payload in _children(moov):
        if box_type == b"mvhd":
            timescale, duration = _mvhd(payload)
        elif box_type == b"trak" and video is None:
            video = _video_track(payload)
    if video is None:
        raise MediaNotVideo("media's moov has no video track")
    if timescale <= 0:
        raise MediaNotVideo("media's moov has no valid movie header (mvhd)")
    return VideoFacts(round(duration / timescale, 3), video.width, video.height, video.codec)


def _mvhd(payload: bytes) -> tuple[int, int]:
    if len(payload) < 20:
        raise MediaNotVideo("media's movie header (mvhd) is truncated")
    if payload[0] == 1:
        if len(payload) < 32:
            raise MediaNotVideo("media's movie header (mvhd) is truncated")
        timescale, duration = struct.unpack_from(">IQ", payload, 20)
    else:
        timescale, duration = struct.unpack_from(">II", payload, 12)
    if duration in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        duration = 0  # "unknown" (a fragmented file's moov)
    return timescale, duration


def _flatten(payload: bytes) -> dict[bytes, bytes]:
    """The first box of each type under a track, descending through its containers."""
    found: dict[bytes, bytes] = {}
    for box_type, child in _children(payload):
        found.setdefault(box_type, child)
        if box_type in _CONTAINERS:
            for inner_type, inner in _flatten(child).items():
                found.setdefault(inner_type, inner)
    return found


def _video_track(trak: bytes) -> VideoFacts | None:
    boxes = _flatten(trak)
    hdlr, tkhd, stsd = boxes.get(b"hdlr"), boxes.get(b"tkhd"), boxes.get(b"stsd")
    if hdlr is None or len(hdlr) < 12 or hdlr[8:12] != b"vide" or tkhd is None or stsd is None:
        return None
    width_offset = 76 if tkhd[0] == 0 else 88  # version 1 has 64-bit times and duration
    if len(tkhd) < width_offset + 8:
        raise MediaNotVideo("media's track header (tkhd) is truncated")
    width, height = (value >> 16 for value in struct.unpack_from(">II", tkhd, width_offset))
    if len(stsd) < 16:
        raise MediaNotVideo("media's video track has no sample description (stsd)")
    codec = stsd[12:16]
    if (width == 0 or height == 0) and len(stsd) >= 8 + 8 + 28:
        # VisualSampleEntry: 6 reserved, 2 data_reference_index, 16 pre_defined/reserved, then width, height.
        width, height = struct.unpack_from(">HH", stsd, 8 + 8 + 24)
    return VideoFacts(0.0, int(width), int(height), _box_name(codec))


def read_facts(data: bytes) -> VideoFacts:
    """The facts of a whole MP4 held in memory (tests, tools)."""
    walker = Mp4Walker()
    walker.feed(data)
    return walker.finish()
