"""Stand-ins for modules Axolotl imports at module level but never calls on the path we run.

Axolotl 0.19.0 imports telemetry and GPU-kernel packages at the top of modules we need
(`axolotl.loaders.adapter`, `axolotl.loaders.model`, the plugin packages). Installing them would
pull CUDA wheels or network clients into an oracle that only builds meta-device models, so each is
replaced by an empty module before Axolotl is imported. Every stub is listed with its reason, and
the list is written to the goldens' _meta.json: a stub that the recorded path did call would fail
loudly (calling a stub class does nothing and returns None), never silently change a result.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

# module name -> why it is stubbed (written to _meta.json "stubs")
STUBS: dict[str, str] = {
    "posthog": "telemetry client imported by axolotl.telemetry; telemetry is off (AXOLOTL_DO_NOT_TRACK=1) and "
    "the oracle must never reach the network",
}


class _StubModule(types.ModuleType):
    """A module whose every attribute is an inert class (imports succeed, nothing runs)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


def install() -> None:
    """Put every stub in sys.modules (only where the real package is absent)."""
    for name in STUBS:
        if name in sys.modules:
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                continue  # the real package is installed: use it
        except (ImportError, ValueError):
            pass
        module = _StubModule(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__path__ = []
        module.__axolotl_oracle_stub__ = True
        sys.modules[name] = module


def describe() -> list[dict[str, str]]:
    """The stubs that are in effect in this process, for _meta.json."""
    return [
        {"module": name, "why": why}
        for name, why in sorted(STUBS.items())
        if getattr(sys.modules.get(name), "__axolotl_oracle_stub__", False)
    ]
