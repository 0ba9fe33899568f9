"""Stand-ins for modules Axolotl imports at module level but never calls on the path we run.

Axolotl 0.19.0 imports telemetry and GPU-kernel packages at the top of modules we need
(`axolotl.loaders.adapter`, `axolotl.loaders.model`, the plugin packages). Installing them would
pull CUDA wheels or network clients into an oracle that only builds meta-device models, so each is
replaced by an empty module before Axolotl is imported. Every stub is listed with its reason, and
the list is written to the goldens' _meta.json: a stub that the recorded path did call would fail
loudly (calling a stub class does nothing and returns None), never silently change a result.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

# module name -> why it is stubbed (written to _meta.json "stubs")
STUBS: dict[str, str] = {
    "posthog": "telemetry client imported by axolotl.telemetry; telemetry is off (AXOLOTL_DO_NOT_TRACK=1) and "
    "the oracle must never reach the network",
    "evaluate": "imported by axolotl.utils.callbacks (eval metrics), which the CutCrossEntropy plugin imports; "
    "no callback runs in the oracle",
    "wandb": "imported by axolotl.utils.callbacks (experiment logging); no callback runs",
    "pandas": "imported by axolotl.utils.callbacks (eval tables); no callback runs",
    "datasets": "imported by axolotl.utils.callbacks (load_dataset for eval); no data is loaded",
    "trl": "imported by axolotl.utils.callbacks (unwrap_model_for_generation); the trainers never run. For "
    "DPO/KTO configs TRL's get_peft_model call is made directly with PEFT (same call TRL makes)",
    "ring_flash_attn": "CUDA-only package that Axolotl's schema imports to accept context_parallel_size > 1; the "
    "oracle assumes the GPU host has it and says so in each such golden (host_assumptions)",
}


class _StubModule(types.ModuleType):
    """A module whose every attribute is an inert class (imports succeed, nothing runs)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a stub for each stubbed package and any of its submodules (`from trl.models import x`)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in _ACTIVE or _probing():
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__axolotl_oracle_stub__ = True
        return module

    def exec_module(self, module):
        return None


_ACTIVE: set[str] = set()
_UTIL_FILES = {importlib.util.find_spec.__code__.co_filename}  # "<frozen importlib.util>" on 3.11


def _probing() -> bool:
    """True inside importlib.util.find_spec: availability probes (transformers' is_X_available) must
    keep seeing the package as absent; only real `import` statements get the stub."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "find_spec" and frame.f_code.co_filename in _UTIL_FILES:
            return True
        frame = frame.f_back
    return False


def install() -> None:
    """Stub every listed package that is not installed (a real package always wins)."""
    for name in STUBS:
        try:
            if importlib.util.find_spec(name) is not None:
                continue
        except (ImportError, ValueError):
            pass
        _ACTIVE.add(name)
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
        sys.meta_path.append(_StubFinder())


def describe() -> list[dict[str, str]]:
    """The stubs that are in effect in this process, for _meta.json."""
    return [
        {"module": name, "why": why}
        for name, why in sorted(STUBS.items())
        if name in _ACTIVE
    ]
