"""loraplan: validate, compile and apply LoRA / QLoRA / DoRA adapter plans.

`import loraplan` stays light (no torch): the API functions import their layer on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loraplan.errors import ConfigError, LoraplanError, PlanMismatchError, ResolveError
from loraplan.schema.diagnostic import Diagnostic

__version__ = "0.1.0"

if TYPE_CHECKING:
    from loraplan.compiler.plan import Plan
    from loraplan.schema.config import Config


def load_config(path: str, dialect: str = "auto") -> Config:
    """Load and validate a YAML config; raises ConfigError carrying every diagnostic."""
    from loraplan.schema.load import load_file

    try:
        result = load_file(path, dialect=dialect)  # type: ignore[arg-type]
    except Exception as exc:  # unreadable in a way the loader did not foresee: still loraplan's error
        raise _internal(ConfigError, str(path), exc) from exc
    if not result.ok:
        raise ConfigError(f"{path}: config has errors", result.diagnostics)
    assert result.config is not None
    return result.config


def compile(config: Config, architecture: Any = None) -> Plan:
    """Resolve `config` against an architecture (None: from the config) into a Plan."""
    from loraplan.compiler.compile import compile_plan

    try:
        return compile_plan(config, architecture)
    except LoraplanError:
        raise
    except Exception as exc:  # the cause stays chained (`raise ... from`): nothing is hidden
        raise _internal(ResolveError, str(getattr(config, "base_model", "<config>")), exc) from exc


def _internal(kind: type[LoraplanError], what: str, exc: BaseException) -> LoraplanError:
    """The API raises only loraplan's errors; the cause stays chained for a traceback."""
    message = f"{what}: {type(exc).__name__}: {exc}"
    return kind(message, [Diagnostic("LP512", "error", message)])


def load_model(config: Config, path: str, **kwargs: Any) -> Any:
    """Load a model from a local folder as the config says (dtype, bitsandbytes)."""
    from loraplan.runtime.load import load_model as _load_model

    return _load_model(config, path, **kwargs)


def apply(plan: Plan, model: Any, **kwargs: Any) -> Any:
    """Inject the planned adapters through PEFT and verify the result against the plan."""
    from loraplan.runtime.apply import apply as _apply

    return _apply(plan, model, **kwargs)


__all__ = [
    "ConfigError",
    "Diagnostic",
    "LoraplanError",
    "PlanMismatchError",
    "ResolveError",
    "__version__",
    "apply",
    "compile",
    "load_config",
    "load_model",
]
