"""Architecture from a config.json (file, model folder or dict), built by transformers on meta.

What `from_pretrained` would build: the class the config's `architectures[0]` names (or the one
given), with its config class (a sub-config where the class wants one, as `from_pretrained`
extracts it). No weights, no network, never remote code; the config's dtype and quantisation
are ignored because only module names and shapes matter. Failures are located LP512 findings.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.errors import ResolveError
from loraplan.schema.diagnostic import Diagnostic

# The largest published config.json in the catalog is ~20 KB; multimodal ones with embedded
# tokenizer tables stay well under a megabyte.
MAX_CONFIG_JSON_BYTES = 8 * 1024 * 1024


def _fail(message: str, hint: str | None = None, code: str = "LP512") -> ResolveError:
    return ResolveError(message, [Diagnostic(code=code, severity="error", message=message, hint=hint)])


def read_config_dict(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(config dict, display name) from a dict, a config.json path or a folder holding one."""
    if isinstance(source, Mapping):
        return dict(source), str(source.get("_name_or_path") or source.get("model_type") or "<config>")
    from loraplan.schema.safe_read import read_bounded

    path = Path(source)
    try:
        if path.is_dir():
            path = path / "config.json"
        text = read_bounded(path, MAX_CONFIG_JSON_BYTES).decode("utf-8")
    except OSError as exc:
        raise _fail(
            f"cannot read {path}: {exc.strerror or exc}", "give a config.json or a folder containing one"
        ) from None
    except UnicodeDecodeError as exc:
        raise _fail(f"{path} is not UTF-8 text: {exc}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _fail(f"{path} is not valid JSON: {exc if not isinstance(exc, RecursionError) else 'nested too deeply'}"
                    ) from None
    if not isinstance(data, dict):
        raise _fail(f"{path}: a config.json holds a JSON object, not {type(data).__name__}")
    return decode_special_floats(data), str(path)


_FLOAT_TAGS = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def decode_special_floats(obj: Any) -> Any:
    """transformers writes inf / nan as `{"__float__": "Infinity"}` (e.g. Mamba-2's time_step_limit) and
    decodes it when it reads a config.json (PreTrainedConfig._decode_special_floats); so does loraplan."""
    if isinstance(obj, dict):
        if set(obj) == {"__float__"} and isinstance(obj["__float__"], str):
            return _FLOAT_TAGS.get(obj["__float__"], obj)
        return {k: decode_special_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_special_floats(v) for v in obj]
    return obj


_OFFLINE_KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")


def _offline() -> list[str]:
    """Keep transformers off the network while it builds: the variables it reads at import, set when
    the user has not set them (returned, to be removed again after the import)."""
    added = [key for key in _OFFLINE_KEYS if key not in os.environ]
    for key in added:
        os.environ[key] = "1"
    return added


def _hub_offline_switch() -> None:
    """huggingface_hub's switch on for the process; sources/hub.py lifts it around its own fetch."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return
    constants.HF_HUB_OFFLINE = True


def _import_transformers() -> Any:
    added = _offline()
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise _fail(
            f"building an architecture from a config.json needs torch and transformers ({exc})",
            "pip install 'loraplan[hf]', or use a catalog architecture (`loraplan archs`)",
        ) from None
    finally:
        for key in added:  # the environment stays the user's (sources/hub.py reads HF_HUB_OFFLINE there)
            os.environ.pop(key, None)
    _hub_offline_switch()
    return transformers


def make_config(data: dict[str, Any], transformers: Any) -> Any:
    """The transformers config object for `data`; unknown or remote-code model types are LP512."""
    from transformers import CONFIG_MAPPING

    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise _fail("config.json has no `model_type`", "a transformers config.json names its model_type")
    if model_type not in CONFIG_MAPPING:
        if data.get("auto_map"):
            raise _fail(
                f"model_type '{model_type}' needs remote code (auto_map in config.json); "
                "loraplan never runs remote code",
                "pass --arch (or `architecture:`) a config.json of a transformers-native port of this model, "
                "or build the model yourself and pass it to loraplan.compile(config, model)",
                code="LP526",
            )
        import difflib

        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING.keys()), n=3)
        raise _fail(
            f"transformers {transformers.__version__} does not know model_type '{model_type}'",
            f"did you mean {', '.join(repr(c) for c in close)}?" if close else "upgrade transformers",
        )
    try:
        return CONFIG_MAPPING[model_type].from_dict(dict(data))
    except Exception as exc:
        raise _fail(f"transformers cannot read this {model_type} config: {exc}") from None


def resolve_class(config: Any, data: dict[str, Any], model_class: str | None, transformers: Any) -> tuple[Any, str]:
    """(class, class name): the override, else architectures[0], else the causal-LM auto class.

    `AutoModel...` names map to the class they build for this config type, as from_pretrained does.
    """
    name = model_class
    if not name:
        archs = data.get("architectures") or []
        name = archs[0] if archs and isinstance(archs[0], str) else None
    if not name:
        name = "AutoModelForCausalLM"
    try:
        cls = getattr(transformers, name, None) if name.isidentifier() else None
    except Exception:
        cls = None
    if cls is not None and not is_model_class(cls, transformers):
        raise _fail(
            f"model_class '{name}' is not a model class of transformers",
            "name a model class such as LlamaForCausalLM, or an AutoModel... class",
        )
    if cls is None and not model_class and name != "AutoModelForCausalLM":
        # A class name transformers lacks (often a remote-code name) on a model type it knows:
        # AutoModelForCausalLM.from_pretrained (what trainers call) builds the mapped class.
        try:
            return resolve_class(config, data, "AutoModelForCausalLM", transformers)
        except ResolveError:
            pass
    if cls is None:
        hint = "set model_class to a class transformers has"
        if data.get("auto_map"):
            hint = "this class comes with remote code (auto_map), which loraplan never runs; " + hint
        raise _fail(f"transformers {transformers.__version__} has no class '{name}'", hint)
    if name.startswith("AutoModel") or name.startswith("AutoModelFor"):
        try:
            cls = cls._model_mapping[type(config)]
        except Exception:
            raise _fail(
                f"{name} has no class for model_type '{getattr(config, 'model_type', '?')}'",
                "set model_class to the class from_pretrained should build",
            ) from None
        name = cls.__name__
    return cls, name


def is_model_class(obj: Any, transformers: Any) -> bool:
    """A PreTrainedModel subclass or an AutoModel... class: what from_pretrained builds a model with.

    Any other top-level name of transformers (`pipeline`, `AutoTokenizer`, `Trainer`, a function)
    must never be called with a user's config.
    """
    if not isinstance(obj, type):
        return False
    if issubclass(obj, transformers.PreTrainedModel):
        return True
    try:
        from transformers.models.auto.auto_factory import _BaseAutoModelClass
    except ImportError:  # pragma: no cover - a transformers without it
        return obj.__name__.startswith("AutoModel") and hasattr(obj, "_model_mapping")
    return issubclass(obj, _BaseAutoModelClass)


def config_for_class(cls: Any, config: Any, data: dict[str, Any]) -> Any:
    """The config `cls.from_pretrained` would build: a sub-config when the class wants one."""
    wanted = getattr(cls, "config_class", None)
    if wanted is None or isinstance(config, wanted):
        return config
    sub: Any = None
    key = getattr(wanted, "base_config_key", "")
    if key and isinstance(data.get(key), dict):
        sub = data[key]
    else:
        for value in data.values():
            if isinstance(value, dict) and value.get("model_type") == getattr(wanted, "model_type", None):
                sub = value
                break
    try:
        return wanted.from_dict(dict(sub if sub is not None else data))
    except Exception as exc:
        raise _fail(f"{cls.__name__} cannot use this config: {exc}") from None


@contextmanager
def _quiet() -> Any:
    """transformers logs warnings (unused keys, deprecated options) that are noise for a dry build."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)


def build_model(data: dict[str, Any], model_class: str | None = None) -> tuple[Any, Any, str]:
    """(meta-device model, its config, class name) for a config dict."""
    transformers = _import_transformers()
    import torch

    with _quiet():
        config = make_config(data, transformers)
        cls, name = resolve_class(config, data, model_class, transformers)
        config = config_for_class(cls, config, data)
        try:
            with torch.device("meta"):
                model = cls(config)
        except Exception as first:
            # Some __init__s read tensor values (e.g. `.item()` on a drop-path schedule), which the
            # meta device cannot give: keep buffers real, parameters empty.
            try:
                from accelerate import init_empty_weights

                with init_empty_weights(include_buffers=False):
                    model = cls(config)
            except Exception:
                raise _fail(f"transformers could not build {name} on the meta device: {first}") from None
    return model, config, name


def from_config_json(
    source: str | os.PathLike | Mapping[str, Any],
    model_class: str | None = None,
    *,
    name: str | None = None,
    origin: str = "config.json",
) -> Architecture:
    """Architecture of `source` (dict, config.json path or model folder) built on the meta device."""
    from loraplan.compiler.sources.from_module import from_module

    data, display = read_config_dict(source)
    model, config, class_name = build_model(data, model_class)
    transformers = _import_transformers()
    return from_module(
        model,
        name=name or display,
        model_type=data.get("model_type"),
        model_class=class_name,
        config=config,
        source=origin,
        transformers_version=transformers.__version__,
    )
