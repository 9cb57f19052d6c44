"""Load a function's handler module the way Lambda does: from its CodeUri and Handler in
template.yaml (every handler module is called ``app``, so each gets a unique name here)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from aws import ROOT, template_resources
from pixverse_jobs import config

_SETTINGS_CACHES = (
    config.store_settings,
    config.gateway_settings,
    config.webhook_settings,
    config.delivery_settings,
    config.queue_settings,
)


def load_function(logical_id: str) -> ModuleType:
    """A fresh import of the function's handler module (settings re-read from the environment)."""
    for cached in _SETTINGS_CACHES:
        cached.cache_clear()
    props = template_resources()[logical_id]["Properties"]
    module_name, _, _ = str(props["Handler"]).rpartition(".")
    path = ROOT / str(props["CodeUri"]) / f"{module_name}.py"
    unique = f"_fn_{logical_id}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return module
