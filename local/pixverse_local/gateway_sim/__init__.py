"""The gateway simulator: a local stand-in for the Pixazo gateway's PixVerse models (see ``server``)."""

from __future__ import annotations

from pixverse_local.gateway_sim.media import iter_media_chunks, media_bytes, media_sha256
from pixverse_local.gateway_sim.server import MODEL_IDS, GatewaySimulator, parse_directives

__all__ = ["MODEL_IDS", "GatewaySimulator", "iter_media_chunks", "media_bytes", "media_sha256", "parse_directives"]
