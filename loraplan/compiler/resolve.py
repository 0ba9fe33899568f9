"""Which architecture a config means, found offline; an unresolvable one is a located LP501.

The name comes from `--arch` (override), else the config's `architecture:`, else `base_model:`.
Each is tried as: a local config.json or model folder (what `from_pretrained` would read first),
a catalog hub id / alias / bare name, then a hub id in the local Hugging Face cache. The
catalog needs no torch; a local or cached config needs transformers, unless its content is a
catalog config's (then the catalog manifest serves it). `model_class` picks the class to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.errors import LoraplanError, ResolveError
from loraplan.schema.config import Config
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.yaml_source import SourceDoc


@dataclass
class Route:
    """How a name resolves: a catalog entry (torch-free) or a config.json to build."""

    kind: str  # "catalog" | "config.json" | "hf-cache"
    name: str
    entry: Any = None  # CatalogEntry
    path: Path | None = None
    data: dict | None = None


@dataclass
class _Attempt:
    name: str
    key: tuple | None  # ("architecture",) / ("base_model",) / None for --arch
    reasons: list[str] = field(default_factory=list)


def _request(config: Config, override: str | None) -> _Attempt:
    if override:
        return _Attempt(override, None)
    if config.architecture:
        return _Attempt(config.architecture, ("architecture",))
    return _Attempt(config.base_model, ("base_model",))


def _read(path: Path) -> dict | None:
    from loraplan.compiler.sources.from_config import read_config_dict

    try:
        return read_config_dict(path)[0]
    except ResolveError:
        return None


def _local_path(name: str) -> Path | None:
    try:
        path = Path(name).expanduser()
        if path.is_file() or (path.is_dir() and (path / "config.json").is_file()):
            return path
    except (OSError, ValueError, RuntimeError):  # too long, a NUL byte, `~nouser`
        return None
    return None


def _config_route(
    kind: str, name: str, path: Path, model_class: str | None, allow_torch: bool, attempt: _Attempt
) -> Route | None:
    from loraplan.compiler.catalog import lookup_config_content

    data = _read(path)
    if data is not None:
        entry = lookup_config_content(data)
        if entry is not None and entry.builds(model_class):
            return Route("catalog", name, entry=entry, path=path)
    if allow_torch:
        return Route(kind, name, path=path, data=data)
    where = "the local Hugging Face cache has" if kind == "hf-cache" else "found"
    attempt.reasons.append(f"{where} {path}, but building it needs torch and transformers")
    return None


def find_route(name: str, model_class: str | None, allow_torch: bool, attempt: _Attempt | None = None) -> Route | None:
    """The first source that resolves `name` (None when none does; reasons go to `attempt`)."""
    from loraplan.compiler.catalog import lookup
    from loraplan.compiler.sources.hf_cache import find_cached_config

    attempt = attempt or _Attempt(name, None)
    local = _local_path(name)
    if local is not None:
        return _config_route("config.json", name, local, model_class, allow_torch, attempt)
    p = Path(name).expanduser()
    try:
        if p.is_dir():
            attempt.reasons.append(f"folder {p} has no config.json")
    except (OSError, ValueError):  # a name too long for a path, a NUL byte: not a folder
        pass
    entry = lookup(name)
    if entry is not None:
        if entry.builds(model_class):
            return Route("catalog", entry.name, entry=entry)
        if allow_torch:
            return Route("catalog-config", entry.name, entry=entry, path=entry.hf_config_path)
        attempt.reasons.append(
            f"the catalog's {entry.name} is {entry.model_class}; building {model_class} needs transformers"
        )
        return None
    try:
        cached = find_cached_config(name)
    except (OSError, ValueError):  # the cache path such a name makes is too long: it is not cached
        cached = None
    if cached is not None:
        return _config_route("hf-cache", name, cached, model_class, allow_torch, attempt)
    return None


def _build(route: Route, model_class: str | None) -> Architecture:
    from loraplan.compiler.catalog import load_catalog_architecture
    from loraplan.compiler.sources.from_config import from_config_json

    if route.kind == "catalog":
        arch = load_catalog_architecture(route.entry)
        if route.path is not None:  # a local copy of a catalog config: name it as the user did
            arch.name = route.name
        return arch
    origin = {"catalog-config": "catalog", "hf-cache": "hf-cache"}.get(route.kind, "config.json")
    source: Any = route.data if route.data is not None else route.path
    arch = from_config_json(source, model_class, name=route.name, origin=origin)
    if route.entry is not None and route.entry.variant:
        from loraplan.compiler.variants import apply_variant

        arch = apply_variant(arch, route.entry.variant)
    return arch


def _locate(diags: list[Diagnostic], attempt: _Attempt, source: SourceDoc | None) -> list[Diagnostic]:
    if source is None or attempt.key is None:
        return diags
    span = source.span(attempt.key)
    return [d.at(span, source.file) for d in diags]


def _unresolved(attempt: _Attempt, model_class: str | None, allow_torch: bool) -> Diagnostic:
    from loraplan.compiler.catalog import list_catalog, suggest

    where = {("architecture",): "architecture", ("base_model",): "base_model"}.get(attempt.key or (), "--arch")
    message = f"{where} '{attempt.name}' cannot be resolved offline"
    if attempt.reasons:
        message += ": " + "; ".join(attempt.reasons)
    else:
        message += ": not in the bundled catalog, not a local config.json or model folder, not in the HF cache"
    close = suggest(attempt.name)
    parts = []
    if close:
        parts.append(f"did you mean {' or '.join(repr(c) for c in close)}?")
    options = (
        f"set `architecture:` (or pass --arch) to a catalog name (`loraplan archs` lists {len(list_catalog())}), "
        "a local config.json or a model folder containing one"
    )
    if not allow_torch:
        options += "; local configs need torch and transformers (pip install 'loraplan[hf]')"
    parts.append(options)
    return Diagnostic("LP501", "error", message, hint=" ".join(parts))


def resolve_architecture(
    config: Config,
    override: str | None = None,
    source: SourceDoc | None = None,
    *,
    allow_torch: bool = True,
) -> Architecture:
    """The Architecture `config` targets; ResolveError (LP501/LP512, located) when there is none."""
    attempt = _request(config, override)
    model_class = config.model_class
    route = find_route(attempt.name, model_class, allow_torch, attempt)
    if route is None:
        diag = _unresolved(attempt, model_class, allow_torch)
        raise ResolveError(diag.message, _locate([diag], attempt, source))
    try:
        arch = _build(route, model_class)
    except LoraplanError as exc:
        diags = exc.diagnostics or [Diagnostic("LP512", "error", str(exc))]
        diags = [d if attempt.name in d.message else replace(d, message=f"{attempt.name}: {d.message}") for d in diags]
        located = _locate(diags, attempt, source)
        raise ResolveError(located[0].message, located) from None
    return with_variant(arch, config, source)


def with_variant(arch: Architecture, config: Config, source: SourceDoc | None) -> Architecture:
    """The module tree the training tool builds when the config asks for a patched variant."""
    if not config.architecture_variant:
        return arch
    from loraplan.compiler.variants import VariantError, apply_variant

    try:
        return apply_variant(arch, config.architecture_variant)
    except VariantError as exc:
        message = f"architecture_variant '{config.architecture_variant}' does not apply to {arch.name}: {exc}"
        diag = Diagnostic("LP512", "error", message, hint="remove the setting, or point base_model at a Llama-4 model")
        located = _locate([diag], _Attempt(arch.name, ("architecture_variant",)), source)
        raise ResolveError(message, located) from None


def can_resolve_offline(config: Config, override: str | None = None) -> bool:
    """Whether the architecture resolves with no torch (catalog, or a local copy of a catalog config)."""
    attempt = _request(config, override)
    try:
        return find_route(attempt.name, config.model_class, False, attempt) is not None
    except Exception:  # a cheap yes/no for `validate`: any surprise means "not offline"
        return False
