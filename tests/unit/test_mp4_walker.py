"""The copier's ISO-BMFF box walker (pixverse_jobs.mp4): facts of real clips, refusals of anything else."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator

import av
import pytest
from pixverse_jobs.errors import MediaNotVideo, PermanentDeliveryError
from pixverse_jobs.mp4 import Mp4Walker, VideoFacts, read_facts
from pixverse_local.gateway_sim.clips import ClipSpec, clip_bytes, clip_spec_for, render_clip
from pixverse_local.gateway_sim.media import HTML_PAGE, MediaItem, skeleton_mp4

SPEC = ClipSpec(width=640, height=360, duration=3, text="walker test")


@pytest.fixture(scope="module")
def faststart() -> bytes:
    return clip_bytes(SPEC)  # made once, then from the disk cache


@pytest.fixture(scope="module")
def moov_at_end() -> bytes:
    return render_clip(SPEC, faststart=False)


def _top_level(data: bytes) -> list[bytes]:
    types, position = [], 0
    while position < len(data):
        size, box_type = struct.unpack_from(">I4s", data, position)
        types.append(box_type)
        position += size
    return types


def _fed(data: bytes, chunk: int) -> VideoFacts:
    walker = Mp4Walker()
    for start in range(0, len(data), chunk):
        walker.feed(data[start : start + chunk])
    return walker.finish()


def _probe(data: bytes) -> VideoFacts:
    """The same facts as PyAV (FFmpeg's demuxer) reads them: the reference the walker must agree with."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        duration = round((container.duration or 0) / 1_000_000, 3)
        return VideoFacts(duration, stream.width, stream.height, stream.codec_context.codec_tag)


def test_faststart_clip_facts_match_the_request_and_pyav(faststart: bytes) -> None:
    assert _top_level(faststart)[0] == b"ftyp"
    assert _top_level(faststart).index(b"moov") < _top_level(faststart).index(b"mdat")

    facts = read_facts(faststart)

    assert facts == VideoFacts(duration_seconds=3.0, width=640, height=360, codec="avc1")
    assert facts == _probe(faststart)


def test_moov_after_mdat_is_found_by_skipping_the_mdat_payload(moov_at_end: bytes) -> None:
    assert _top_level(moov_at_end).index(b"mdat") < _top_level(moov_at_end).index(b"moov")

    assert read_facts(moov_at_end) == VideoFacts(3.0, 640, 360, "avc1") == _probe(moov_at_end)


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_facts_do_not_depend_on_how_the_bytes_are_chunked(faststart: bytes, moov_at_end: bytes, chunk: int) -> None:
    assert _fed(faststart, chunk) == _fed(moov_at_end, chunk) == VideoFacts(3.0, 640, 360, "avc1")


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "size"),
    [("360p", "16:9", (640, 360)), ("720p", "9:16", (720, 1280)), ("540p", "1:1", (540, 540))],
)
def test_simulator_clips_follow_resolution_and_aspect_ratio(
    resolution: str, aspect_ratio: str, size: tuple[int, int]
) -> None:
    spec = clip_spec_for({"prompt": "ratio", "resolution": resolution, "aspect_ratio": aspect_ratio, "duration": 2})

    facts = read_facts(clip_bytes(spec))

    assert (facts.width, facts.height, facts.duration_seconds, facts.codec) == (*size, 2.0, "avc1")


def test_html_page_is_refused_after_its_first_eight_bytes() -> None:
    walker = Mp4Walker()

    with pytest.raises(MediaNotVideo, match="does not start with an MP4 'ftyp' box"):
        walker.feed(HTML_PAGE[:8])


def test_random_bytes_are_not_a_video() -> None:
    with pytest.raises(MediaNotVideo):
        read_facts(b"\x00\x00\x00\x10" + os.urandom(4096))


def test_not_video_is_a_permanent_delivery_error_with_its_own_code() -> None:
    assert issubclass(MediaNotVideo, PermanentDeliveryError)
    assert MediaNotVideo.code == "media_not_video"
    assert PermanentDeliveryError.code == "delivery_failed"


@pytest.mark.parametrize("keep", [4, 8, 40, 300], ids=["in-ftyp-header", "ftyp-header-only", "in-ftyp", "in-moov"])
def test_truncated_faststart_file_is_refused(faststart: bytes, keep: int) -> None:
    with pytest.raises(MediaNotVideo):
        read_facts(faststart[:keep])


def test_moov_at_end_file_cut_inside_its_mdat_is_refused(moov_at_end: bytes) -> None:
    cut = moov_at_end[: moov_at_end.index(b"mdat") + 1000]

    with pytest.raises(MediaNotVideo, match="ends inside box 'mdat'"):
        read_facts(cut)


def test_moov_at_end_file_cut_at_its_moov_has_no_moov(moov_at_end: bytes) -> None:
    cut = moov_at_end[: moov_at_end.rindex(b"moov") - 4]

    with pytest.raises(MediaNotVideo, match="no moov"):
        read_facts(cut)


def test_ftyp_and_mdat_without_moov_is_refused() -> None:
    head = skeleton_mp4(640, 360, 5)
    ftyp = head[: struct.unpack_from(">I", head)[0]]
    data = ftyp + struct.pack(">I4s", 8 + 1000, b"mdat") + bytes(1000)  # no moov anywhere

    with pytest.raises(MediaNotVideo, match="no moov"):
        read_facts(data)


def test_empty_media_is_refused() -> None:
    with pytest.raises(MediaNotVideo, match="empty"):
        Mp4Walker().finish()


def test_moov_larger_than_the_cap_is_refused_without_buffering_it(faststart: bytes) -> None:
    walker = Mp4Walker(max_moov_bytes=64)

    with pytest.raises(MediaNotVideo, match="larger than the 64 bytes"):
        walker.feed(faststart)


def test_codec_fourcc_comes_from_the_sample_entry() -> None:
    assert read_facts(skeleton_mp4(1920, 1080, 10, "hvc1")) == VideoFacts(10.0, 1920, 1080, "hvc1")
    assert read_facts(skeleton_mp4(1280, 720, 7, "av01")).codec == "av01"


def test_a_box_with_a_64_bit_size_is_walked() -> None:
    head = skeleton_mp4(640, 360, 5)
    data = head + struct.pack(">I4sQ", 1, b"free", 16 + 100) + bytes(100)

    assert read_facts(data) == VideoFacts(5.0, 640, 360, "avc1")


def _items() -> Iterator[tuple[str, MediaItem]]:
    spec = clip_spec_for({"prompt": "sized", "resolution": "360p", "duration": 5})
    for size in (1024, 70_000, 17 * 1024 * 1024):
        yield f"size={size}", MediaItem("walker", 0, size, spec)


@pytest.mark.parametrize(("name", "item"), list(_items()), ids=[name for name, _ in _items()])
def test_sized_simulator_media_are_containers_with_the_clip_s_facts(name: str, item: MediaItem) -> None:
    walker = Mp4Walker()
    for chunk in item.chunks():
        walker.feed(chunk)

    assert walker.finish() == VideoFacts(5.0, 640, 360, "avc1")
