"""A local stand-in for the Pixazo gateway's PixVerse models, faithful to ``pixazo-pixverse-api.txt``.

Where each behaviour lives (the doc's section names in quotes):

* ``params``: each model's parameter table ("Request" parameters) and the submit body check.
* ``submit``: ``POST /{model}/v1/{model}-request`` ("Authentication", "Request", "Response"): the key,
  the model, the webhook headers, the body, then ``202 {"request_id", "status": "QUEUED", "polling_url"}``.
* ``lifecycle``: request records and "Status Flow" (QUEUED, PROCESSING, then COMPLETED / FAILED /
  ERROR on a timer); ``GET /v2/requests/status/{id}`` ("Retrieving Results"), whose payload is the
  callback body too.
* ``webhooks``: ``X-Webhook-URL`` / ``X-Webhook-Mode`` ("Webhook Headers"), ``terminal`` and ``sync``
  callbacks, retries and duplicates ("Delivery semantics").
* ``media``: ``GET /media/{request_id}/{n}.mp4``, deterministic pseudo-random bytes streamed in chunks
  (multi-GiB items never sit in memory), single byte ranges honoured.
* ``directives``: ``[sim:...]`` markers in the prompt that choose a request's outcome, callbacks and media.
* ``faults``: injected faults (``POST /_sim/faults``) and the gateway's error bodies ("Error Responses").
* ``admission``: the admission limit (at most N requests QUEUED or PROCESSING, 429 beyond) and the
  submits counted per job.
* ``control``: the ``/_sim/`` control API (records, stats, faults, admission, submits, reset), loopback
  clients only.
* ``server``: ``GatewaySimulator`` (settings, start/stop) and the HTTP server that routes each path.
* ``httpio``: HTTP plumbing the routes share (JSON answers, bodies, the key check, loopback clients).
* ``__main__``: ``python -m pixverse_local.gateway_sim --port 8090 --api-key KEY [--max-in-flight N]``.
"""

from __future__ import annotations

from pixverse_local.gateway_sim.directives import Directives, parse_directives
from pixverse_local.gateway_sim.media import iter_media_chunks, media_bytes, media_sha256
from pixverse_local.gateway_sim.params import MODEL_IDS, validate_parameters
from pixverse_local.gateway_sim.server import GatewaySimulator

__all__ = [
    "MODEL_IDS",
    "Directives",
    "GatewaySimulator",
    "iter_media_chunks",
    "media_bytes",
    "media_sha256",
    "parse_directives",
    "validate_parameters",
]
