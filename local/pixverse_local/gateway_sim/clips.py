"""Real, playable MP4 clips for the simulator's media: colour bars, a running timer and the prompt's words.

A completed request's media is a short H.264 clip (``libx264`` through PyAV, whose wheels bundle
FFmpeg: nothing to install from the system) whose width, height and duration follow the request's
``resolution``, ``aspect_ratio`` and ``duration``, so a copy can be played and its facts checked.
Frames are drawn in pure Python straight into the YUV 4:2:0 planes (no numpy, no font file): SMPTE-like
colour bars over the top two thirds, then the prompt's words and an ``00:01.3`` timer in a built-in
5x7 bitmap font. Clips are encoded at ``FRAME_RATE`` frames a second with a high CRF, so a 5 s 1080p clip
is a few hundred KiB and takes well under a second or two to make.

A clip is made once per ``ClipSpec`` and kept on disk (``SIM_CLIP_CACHE_DIR``, default
``~/.cache/pixverse-sim/clips``; written to a temporary name and renamed, so concurrent makers never
serve half a file); a second request with the same words, size and duration reads it back. The cache key
includes ``CLIP_VERSION``: changing how clips are drawn means bumping it.

PyAV is a development dependency (requirements-dev.txt), never a Lambda one: the copier reads the
container with its own box walker (``pixverse_jobs.mp4``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CLIP_CODEC",
    "FRAME_RATE",
    "ClipSpec",
    "clip_bytes",
    "clip_cache_dir",
    "clip_spec_for",
    "frame_size",
]

CLIP_VERSION: Final = 2
FRAME_RATE: Final = 10
CLIP_CODEC: Final = "avc1"  # the sample entry libx264 writes in an MP4
CACHE_DIR_ENV: Final = "SIM_CLIP_CACHE_DIR"
MAX_TEXT_CHARS: Final = 120

# Short side in pixels per resolution name (the long side follows the aspect ratio), as video
# resolutions are usually named: 360p 16:9 is 640x360, 9:16 is 360x640, 1:1 is 360x360.
RESOLUTION_LINES: Final = {"360p": 360, "480p": 480, "540p": 540, "720p": 720, "1080p": 1080, "2160p": 2160}
DEFAULT_RESOLUTION: Final = "720p"
DEFAULT_ASPECT: Final = "16:9"
DEFAULT_DURATION: Final = 5
_DIRECTIVE_RE: Final = re.compile(r"\[sim:[^\]]*\]")
_ASPECT_RE: Final = re.compile(r"^(\d{1,2}):(\d{1,2})$")


@dataclass(frozen=True)
class ClipSpec:
    """What a clip shows and how big it is: ``width`` x ``height`` pixels (even), ``duration`` seconds."""

    width: int
    height: int
    duration: int
    text: str = ""

    @property
    def cache_key(self) -> str:
        raw = f"v{CLIP_VERSION}|{self.width}x{self.height}|{self.duration}s|{FRAME_RATE}fps|{self.text}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Width and height for a resolution name and an ``W:H`` aspect ratio: the short side is the
    resolution's line count, the long side follows the ratio, both rounded to even numbers
    (H.264 in 4:2:0 needs them even)."""
    short = RESOLUTION_LINES.get(resolution, RESOLUTION_LINES[DEFAULT_RESOLUTION])
    match = _ASPECT_RE.match(aspect_ratio)
    across, down = (int(match.group(1)), int(match.group(2))) if match else (16, 9)
    if across <= 0 or down <= 0:
        across, down = 16, 9
    if across >= down:
        return _even(short * across / down), _even(short)
    return _even(short), _even(short * down / across)


def clip_spec_for(body: dict[str, Any]) -> ClipSpec:
    """The clip a submit body asks for: its resolution, aspect ratio, duration (an integer or,
    for V5.6 image-to-video, a string) and prompt (without ``[sim:...]`` directives); the
    documented defaults (720p, 16:9, 5 s) where the body says nothing."""
    width, height = frame_size(str(body.get("resolution") or DEFAULT_RESOLUTION), str(body.get("aspect_ratio") or ""))
    raw_duration = body.get("duration", DEFAULT_DURATION)
    duration = int(raw_duration) if str(raw_duration).isdigit() else DEFAULT_DURATION
    text = " ".join(_DIRECTIVE_RE.sub(" ", str(body.get("prompt") or "")).split())[:MAX_TEXT_CHARS]
    return ClipSpec(width=width, height=height, duration=max(1, duration), text=text)


def clip_cache_dir() -> Path:
    """Where made clips are kept: ``SIM_CLIP_CACHE_DIR`` or ``~/.cache/pixverse-sim/clips``."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "pixverse-sim" / "clips"


_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
_memory: dict[str, bytes] = {}
_MEMORY_ITEMS: Final = 32


def clip_bytes(spec: ClipSpec) -> bytes:
    """The MP4 for ``spec``: from memory, else from the disk cache, else made now (once per spec,
    however many threads ask at the same time)."""
    key = spec.cache_key
    with _locks_guard:
        cached = _memory.get(key)
        if cached is not None:
            return cached
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        cached = _memory.get(key)
        if cached is not None:
            return cached
        path = clip_cache_dir() / f"{key}.mp4"
        try:
            data = path.read_bytes()
        except OSError:
            data = render_clip(spec)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
            partial.write_bytes(data)
            partial.replace(path)
        with _locks_guard:
            if len(_memory) >= _MEMORY_ITEMS:
                _memory.pop(next(iter(_memory)))
            _memory[key] = data
        return data


# --- drawing -------------------------------------------------------------------------------------

# (Y, U, V) in BT.601 limited range: white, yellow, cyan, green, magenta, red, blue at 75%.
_BARS: Final = (
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
)
_BLACK: Final = (16, 128, 128)
_TEXT_Y: Final = 235

# 5x7 glyphs, one 5-bit row each (most significant bit = leftmost column).
_GLYPHS: Final[dict[str, tuple[int, ...]]] = {
    "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (30, 17, 17, 17, 17, 17, 30),
    "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 10, 4, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31),
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    " ": (0, 0, 0, 0, 0, 0, 0),
    ".": (0, 0, 0, 0, 0, 12, 12),
    ",": (0, 0, 0, 0, 12, 4, 8),
    ":": (0, 12, 12, 0, 12, 12, 0),
    "=": (0, 0, 31, 0, 31, 0, 0),
    "-": (0, 0, 0, 31, 0, 0, 0),
    "!": (4, 4, 4, 4, 4, 0, 4),
    "?": (14, 17, 1, 2, 4, 0, 4),
    "'": (4, 4, 8, 0, 0, 0, 0),
    "/": (1, 1, 2, 4, 8, 16, 16),
    "(": (2, 4, 8, 8, 8, 4, 2),
    ")": (8, 4, 2, 2, 2, 4, 8),
}
_UNKNOWN: Final = (31, 17, 17, 17, 17, 17, 31)
_GLYPH_W: Final = 6  # 5 columns and one of spacing
_GLYPH_H: Final = 8  # 7 rows and one of spacing


def _text_rows(text: str, scale: int, background: int) -> list[bytes]:
    """Rows of luma bytes showing ``text`` in the bitmap font, ``scale`` pixels per font pixel."""
    glyphs = [_GLYPHS.get(char, _UNKNOWN) for char in text.upper()]
    on, off = bytes([_TEXT_Y]) * scale, bytes([background]) * scale
    rows: list[bytes] = []
    for line in range(_GLYPH_H):
        pieces: list[bytes] = []
        for glyph in glyphs:
            bits = glyph[line] if line < len(glyph) else 0
            pieces.extend(on if bits & (16 >> column) else off for column in range(5))
            pieces.append(off)
        row = b"".join(pieces)
        rows.extend([row] * scale)
    return rows


def _wrap(text: str, columns: int, lines: int) -> list[str]:
    """``text`` broken at spaces into at most ``lines`` lines of at most ``columns`` characters
    (a word longer than a line is cut into pieces)."""
    words = [word[i : i + columns] for word in text.split() for i in range(0, len(word), columns)]
    result: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= columns:
            current = candidate
            continue
        result.append(current)
        current = word
    if current:
        result.append(current)
    return result[:lines]


class _Canvas:
    """The static part of every frame (bars, the prompt's words) and where the timer goes."""

    def __init__(self, spec: ClipSpec) -> None:
        width, height = spec.width, spec.height
        self.width, self.height = width, height
        bars_height = (height * 2 // 3) & ~1
        bar_edges = [width * i // len(_BARS) for i in range(len(_BARS) + 1)]
        luma_bar = b"".join(bytes([y]) * (bar_edges[i + 1] - bar_edges[i]) for i, (y, _, _) in enumerate(_BARS))
        half_edges = [edge // 2 for edge in bar_edges]
        chroma = [
            b"".join(bytes([c[k]]) * (half_edges[i + 1] - half_edges[i]) for i, c in enumerate(_BARS)) for k in (1, 2)
        ]
        black_row = bytes([_BLACK[0]]) * width
        self.luma = [luma_bar] * bars_height + [black_row] * (height - bars_height)
        half_w, half_h = width // 2, height // 2
        self.u = b"".join([chroma[0]] * (bars_height // 2) + [bytes([128]) * half_w] * (half_h - bars_height // 2))
        self.v = b"".join([chroma[1]] * (bars_height // 2) + [bytes([128]) * half_w] * (half_h - bars_height // 2))
        # The band below the bars: one timer line, then the prompt's words.
        band = height - bars_height
        self.scale = max(1, min(band // (_GLYPH_H * 4), width // (_GLYPH_W * 24)))
        self.margin = max(2, self.scale * 2)
        self.timer_top = bars_height + self.margin
        line_height = _GLYPH_H * self.scale
        columns = max(1, (width - 2 * self.margin) // (_GLYPH_W * self.scale))
        room = max(0, (height - self.timer_top - line_height - self.margin) // line_height)
        top = self.timer_top + line_height
        for line in _wrap(spec.text, columns, room):
            _paint(self.luma, _text_rows(line, self.scale, _BLACK[0]), top, self.margin)
            top += line_height

    def frame_planes(self, seconds: float) -> tuple[bytes, bytes, bytes]:
        rows = list(self.luma)
        _paint(rows, _text_rows(_timer(seconds), self.scale, _BLACK[0]), self.timer_top, self.margin)
        return b"".join(rows), self.u, self.v


def _timer(seconds: float) -> str:
    """``00:02.5``: minutes, seconds and tenths (a trailing unit letter would read as a digit)."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def _paint(target: list[bytes], rows: list[bytes], top: int, left: int) -> None:
    """Write ``rows`` into the luma rows ``target`` from row ``top``, column ``left``, clipped."""
    for offset, text_row in enumerate(rows[: max(0, len(target) - top)]):
        base = target[top + offset]
        piece = text_row[: len(base) - left]
        target[top + offset] = base[:left] + piece + base[left + len(piece) :]


def render_clip(spec: ClipSpec, *, faststart: bool = True) -> bytes:
    """Encode ``spec`` as an H.264 MP4: ``moov`` before ``mdat`` ("faststart", what the simulator
    serves) or, with ``faststart=False``, after it (as a plain recorder writes it; tests use it)."""
    import av  # a development dependency: imported only when a clip is made

    canvas = _Canvas(spec)
    # faststart rewrites the file in a second pass, which needs a real file, not a BytesIO.
    with tempfile.TemporaryDirectory(prefix="pixverse-clip-") as folder:
        path = Path(folder) / "clip.mp4"
        _encode(av, canvas, spec, path, faststart=faststart)
        return path.read_bytes()


def _encode(av: Any, canvas: _Canvas, spec: ClipSpec, path: Path, *, faststart: bool) -> None:
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=FRAME_RATE)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30", "tune": "stillimage"}
        stream.codec_context.time_base = Fraction(1, FRAME_RATE)
        for index in range(spec.duration * FRAME_RATE):
            frame = av.VideoFrame(spec.width, spec.height, "yuv420p")
            for plane, data in zip(frame.planes, canvas.frame_planes(index / FRAME_RATE), strict=True):
                _fill_plane(plane, data)
            frame.pts = index
            frame.time_base = Fraction(1, FRAME_RATE)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _fill_plane(plane: Any, data: bytes) -> None:
    """Copy tightly packed rows into a plane whose rows may be padded (``line_size``)."""
    width = len(data) // plane.height
    if plane.line_size == width:
        plane.update(data)
        return
    padding = b"\0" * (plane.line_size - width)
    plane.update(b"".join(data[row * width : (row + 1) * width] + padding for row in range(plane.height)))
