"""``POST /{model}/v1/{model}-request``: the doc's "Request" and "Response" for the six PixVerse models.

In order: an injected submit fault, the ``Ocp-Apim-Subscription-Key`` check, the model, the webhook
headers, the body against the model's parameter table and the prompt's directives; then the admission
limit (``admission``: beyond it, ``429`` with the doc's error body); then the request is recorded and its
lifecycle starts, and the answer is ``202 {"request_id", "status": "QUEUED", "polling_url"}``. Every
submit is counted for the job its ``X-Webhook-URL`` names, whatever the answer.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Final

from pixverse_local.gateway_sim.admission import AtCapacity, job_id_of
from pixverse_local.gateway_sim.faults import FAULT_BODIES, answer_fault
from pixverse_local.gateway_sim.httpio import API_KEY_HEADER, BadRequest, JsonHandler, parse_json_object
from pixverse_local.gateway_sim.params import MODEL_PARAMETERS
from pixverse_local.gateway_sim.webhooks import WEBHOOK_MODE_HEADER, WEBHOOK_URL_HEADER, webhook_settings

if TYPE_CHECKING:
    from pixverse_local.gateway_sim.server import GatewaySimulator

__all__ = ["SUBMIT_PATH_RE", "submit"]

logger = logging.getLogger(__name__)

SUBMIT_PATH_RE: Final = re.compile(r"^/([^/]+)/v1/([^/]+)-request$")


def submit(handler: JsonHandler, sim: GatewaySimulator, model: str, operation: str, raw_body: bytes) -> None:
    """Answer one submit (``operation`` is the path's second model name, which must match)."""
    state = sim.state
    if model != operation:
        handler.not_found()
        return
    job_id = job_id_of(handler.headers.get(WEBHOOK_URL_HEADER))
    with state.lock:
        state.stats["submits_received"] += 1
        state.admission.count_submit(job_id)
    fault = state.take_fault()
    if fault is not None and fault.status != 202:
        if fault.status == 429:
            state.bump("submits_throttled")
        answer_fault(handler, fault, state.stop)
        return
    if not sim.check_key(handler.headers.get(API_KEY_HEADER)):
        handler.send_json(401, FAULT_BODIES[401])
        return
    if model not in MODEL_PARAMETERS:
        handler.send_error_body(400, "Model not found", f"Model '{model}' not found or is disabled")
        return
    try:
        webhook_url, webhook_mode = webhook_settings(
            handler.headers.get(WEBHOOK_URL_HEADER),
            handler.headers.get(WEBHOOK_MODE_HEADER),
            allow_http_loopback=sim.allow_http_webhooks_on_loopback,
        )
        body = parse_json_object(raw_body)
        record = sim.lifecycle.accept(model, body, webhook_url, webhook_mode, job_id)
    except BadRequest as exc:
        handler.send_error_body(400, "Bad Request", str(exc))
        return
    except AtCapacity as exc:
        _answer_at_capacity(handler, sim, str(exc))
        return
    if fault is not None and fault.delay_seconds:
        # Accepted, recorded and its lifecycle (callbacks included) already running; only the answer
        # comes late, so a caller's timeout can fire after the gateway took the job.
        state.stop.wait(fault.delay_seconds)
    handler.send_json(
        202,
        {
            "request_id": record.request_id,
            "status": "QUEUED",
            "polling_url": f"{sim.url}/v2/requests/status/{record.request_id}",
        },
    )


def _answer_at_capacity(handler: JsonHandler, sim: GatewaySimulator, reason: str) -> None:
    """429 with the doc's error body; ``Retry-After`` only when one was configured (the doc gives none)."""
    state = sim.state
    with state.lock:
        state.stats["submits_throttled"] += 1
        retry_after = state.admission.retry_after
    logger.debug("submit refused at capacity", extra={"reason": reason})
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    handler.send_json(429, FAULT_BODIES[429], headers)
