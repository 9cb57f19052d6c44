"""The control API under ``/_sim/``, answered to loopback clients only (403 to others).

* ``GET /_sim/requests[/{id}]``: request records with their directives, callback attempts, media GETs
  and each media item's sha256.
* ``POST /_sim/requests`` ``{"model", "status", "count"}``: seed ``count`` requests that stand at
  ``status`` for good (no callbacks); answers ``{"request_ids": [...]}``. A backlog for the status
  endpoint, as the reconciler's benchmark needs, without a submit per job.
* ``GET /_sim/stats``: counters (with ``in_flight`` and ``peak_in_flight``); ``POST /_sim/reset``:
  forget requests, faults and counters (the admission limit is a setting and stays).
* ``GET|POST|DELETE /_sim/faults``: list, add (see ``faults``) or clear injected faults.
* ``GET|POST /_sim/admission``: the admission limit and ``Retry-After`` (see ``admission``), read or
  set at run time with ``{"max_in_flight": N or null, "retry_after": S or null}``.
* ``GET /_sim/submits``: submits received and accepted per job (the job the ``X-Webhook-URL`` names).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from pixverse_local.gateway_sim.admission import parse_admission_update
from pixverse_local.gateway_sim.faults import parse_fault
from pixverse_local.gateway_sim.httpio import BadRequest, JsonHandler, parse_json_object
from pixverse_local.gateway_sim.lifecycle import GatewayState, Request, media_urls
from pixverse_local.gateway_sim.media import media_item

if TYPE_CHECKING:
    from pixverse_local.gateway_sim.server import GatewaySimulator

__all__ = ["control_delete", "control_get", "control_post", "records"]

_SIM_REQUEST_PATH_RE: Final = re.compile(r"^/_sim/requests/([^/]+)$")


def _record_view(record: Request, media_host: str) -> dict[str, Any]:
    """A JSON-ready copy of ``record``; call with the lock held. Media hashes are filled in later."""
    media: list[dict[str, Any]] = []
    if record.status == "COMPLETED":
        media = [{"url": url, "size": None, "sha256": None} for url in media_urls(record, media_host)]
    directives = record.directives
    return {
        "request_id": record.request_id,
        "model": record.model,
        "body": record.body,
        "webhook_url": record.webhook_url,
        "webhook_mode": record.webhook_mode,
        "status": record.status,
        "error": record.error,
        "directives": {
            "outcome": directives.outcome,
            "dup": directives.duplicates,
            "no_callback": directives.no_callback,
            "size": record.media_size,
            "media_body": directives.media_body,
            "media": directives.media_count,
            "cut": directives.cut,
            "media_url": directives.media_url,
            "redirect": directives.redirect,
            "hops": directives.hops,
            "media_status": directives.media_status,
            "content_type": directives.content_type,
            "ranges": directives.ranges,
        },
        "image": record.image.view() if record.image is not None else None,
        "callbacks": [dict(attempt) for attempt in record.callbacks],
        "media": media,
        "media_gets": record.media_gets,
        "media_requests": [dict(item) for item in record.media_requests],
        "submitted_at": record.submitted_at,
        "updated_at": record.updated_at,
        "completed_at": record.completed_at,
    }


def records(state: GatewayState, request_id: str | None = None) -> list[dict[str, Any]]:
    """Every request's record (or the one ``request_id`` names, if known), with media sha256s."""
    with state.lock:
        if request_id is None:
            chosen = list(state.requests.values())
        else:
            record = state.requests.get(request_id)
            chosen = [] if record is None else [record]
        views = [(_record_view(record, state.media_host), record) for record in chosen]
    # Sizes and hashes outside the lock: a clip may be made, a multi-GiB item takes a moment to hash
    # (both are cached).
    for view, record in views:
        for n, entry in enumerate(view["media"]):
            item = media_item(record, n)
            entry["size"], entry["sha256"] = item.length, item.sha256()
    return [view for view, _ in views]


def _add_fault(state: GatewayState, spec: dict[str, Any]) -> dict[str, Any]:
    fault = parse_fault(spec)
    with state.lock:
        state.faults.add(fault)
        return {"faults": state.faults.describe()}


def _denied_or_missing(handler: JsonHandler) -> None:
    if not handler.loopback_client():
        handler.send_error_body(403, "Forbidden", "the control API answers loopback clients only")
    else:
        handler.not_found()


def control_get(handler: JsonHandler, sim: GatewaySimulator, path: str) -> None:
    """``GET /_sim/...``."""
    state = sim.state
    if not handler.loopback_client():
        _denied_or_missing(handler)
    elif path == "/_sim/requests":
        handler.send_json(200, records(state))
    elif match := _SIM_REQUEST_PATH_RE.match(path):
        found = records(state, match.group(1))
        if found:
            handler.send_json(200, found[0])
        else:
            handler.not_found(f"Request '{match.group(1)}' not found")
    elif path == "/_sim/stats":
        handler.send_json(200, state.stats_view())
    elif path == "/_sim/faults":
        with state.lock:
            listed = {"faults": state.faults.describe()}
        handler.send_json(200, listed)
    elif path == "/_sim/admission":
        with state.lock:
            described = state.admission.describe(len(state.active))
        handler.send_json(200, described)
    elif path == "/_sim/submits":
        with state.lock:
            submits = state.admission.submits_view()
        handler.send_json(200, submits)
    else:
        handler.not_found()


def control_post(handler: JsonHandler, sim: GatewaySimulator, path: str, raw_body: bytes) -> None:
    """``POST /_sim/faults``, ``POST /_sim/admission``, ``POST /_sim/reset`` and ``POST /_sim/requests``."""
    state = sim.state
    if not handler.loopback_client():
        _denied_or_missing(handler)
    elif path == "/_sim/faults":
        try:
            handler.send_json(200, _add_fault(state, parse_json_object(raw_body)))
        except BadRequest as exc:
            handler.send_error_body(400, "Bad Request", str(exc))
    elif path == "/_sim/admission":
        try:
            update = parse_admission_update(parse_json_object(raw_body))
        except BadRequest as exc:
            handler.send_error_body(400, "Bad Request", str(exc))
            return
        with state.lock:
            state.admission.update(update)
            described = state.admission.describe(len(state.active))
        handler.send_json(200, described)
    elif path == "/_sim/reset":
        state.reset()
        handler.send_json(200, {"reset": True})
    elif path == "/_sim/requests":
        try:
            spec = parse_json_object(raw_body)
            ids = sim.lifecycle.seed(str(spec.get("model")), str(spec.get("status")), spec.get("count", 1))
        except BadRequest as exc:
            handler.send_error_body(400, "Bad Request", str(exc))
            return
        handler.send_json(201, {"request_ids": ids})
    else:
        handler.not_found()


def control_delete(handler: JsonHandler, sim: GatewaySimulator, path: str) -> None:
    """``DELETE /_sim/faults``: clear them."""
    state = sim.state
    if path == "/_sim/faults" and handler.loopback_client():
        with state.lock:
            state.faults.clear()
        handler.send_json(200, {"faults": []})
    else:
        _denied_or_missing(handler)
