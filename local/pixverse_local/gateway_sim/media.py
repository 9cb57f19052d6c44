"""Deterministic pseudo-random media for the gateway simulator.

A media item is identified by ``(request_id, n)`` and has a size in bytes. Its content is a 64 KiB
block drawn from SHAKE-256 seeded with the identity, repeated with the block's index written over its
first eight bytes, so every block differs, any byte range can be produced without the bytes before it,
and multi-GiB items stream at memory speed without ever being held in memory.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator

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
