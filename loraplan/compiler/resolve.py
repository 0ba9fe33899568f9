"""Which architecture a config means, and where it came from; an unresolvable one is a located finding.

The name comes from `--arch` (override), else the config's `architecture:`, else `base_model:`.
Each is tried, in this order, as:

1. a local config.json or model folder (what `from_pretrained` would read first); a path written
   in the config is taken relative to the YAML file's folder first, then the current directory;
2. a catalog hub id / alias / bare name (no torch);
3. a hub id in the local Hugging Face cache (`base_model_revision`'s snapshot);
4. the hub, when the network is allowed: config.json only, into the HF cache (sources/hub.py).

A local, cached or fetched config needs transformers, unless its content is a catalog config's
(then the catalog manifest serves it). `model_class` picks the class to build. Every route records
its origin (`Architecture.origin`), which the plan header prints.
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

    kind: str  # "catalog" | "catalog-config" | "config.json" | "hf-cache" | "hub"
    name: str
    entry: Any = None  # CatalogEntry
    path: Path | None = None
    data: dict | None = None
    origin: dict = field(default_factory=dict)


@dataclass
class _Attempt:
    name: str
    key: tuple | None  # ("architecture",) / ("base_model",) / None for --arch
    reasons: list[str] = field(default_factory=list)
    base_dir: Path | None = None  # the YAML file's folder, for paths written in the config
    revision: str | None = None
    hub_error: ResolveError | None = None


def _request(config: Config, override: str | None, source: SourceDoc | None = None) -> _Attempt:
    revision = getattr(config, "base_model_revision", None)
    if override:
        return _Attempt(override, None, revision=revision)
    base_dir = _yaml_dir(source)
    if config.architecture:
        return _Attempt(config.architecture, ("architecture",), base_dir=base_dir, revision=revision)
    return _Attempt(config.base_model, ("base_model",), base_dir=base_dir, revision=revision)


def _yaml_dir(source: SourceDoc | None) -> Path | None:
    file = getattr(source, "file", None)
    if not file or file.startswith("<"):
        return None
    return Path(file).resolve().parent


def _read(path: Path) -> dict | None:
    from loraplan.compiler.sources.from_config import read_config_dict

    try:
        return read_config_dict(path)[0]
    except ResolveError:
        return None


def _is_config(path: Path) -> bool:
    try:
        return path.is_file() or (path.is_dir() and (path / "config.json").is_file())
    except (OSError, ValueError, RuntimeError):  # too long, a NUL byte, `~nouser`
        return False


def _local_path(name: str, base_dir: Path | None = None) -> Path | None:
    """The config.json or model folder `name` names: relative to `base_dir` first, then the cwd."""
    try:
        path = Path(name).expanduser()
    except (OSError, ValueError, RuntimeError):
        return None
    candidates = [path]
    if base_dir is not None and not path.is_absolute():
        candidates.insert(0, base_dir / path)
    for candidate in candidates:
        if _is_config(candidate):
            return candidate.resolve()
    return None


def looks_like_path(name: str) -> bool:
    """A name only a file system can hold (not a hub id or catalog name)."""
    return name.startswith((".", "/", "~", "\\")) or name.endswith(".json") or name.count("/") > 1 or ":" in name


def _config_route(kind: str, name: str, path: Path, model_class: str | None, allow_torch: bool,
                  attempt: _Attempt, origin: dict) -> Route | None:
    from loraplan.compiler.catalog import lookup_config_content

    data = _read(path)
    if data is not None:
        entry = lookup_config_content(data)
        if entry is not None and entry.builds(model_class):
            return Route("catalog", name, entry=entry, path=path, data=data,
                         origin={**origin, "same_as_catalog": entry.name})
    if allow_torch:
        return Route(kind, name, path=path, data=data, origin=origin)
    where = {"hf-cache": "the local Hugging Face cache has", "hub": "fetched"}.get(kind, "found")
    attempt.reasons.append(f"{where} {path}, but building it needs torch and transformers")
    return None


def find_route(name: str, model_class: str | None, allow_torch: bool, attempt: _Attempt | None = None,
               *, network: bool = False) -> Route | None:
    """The first source that resolves `name` (None when none does; reasons go to `attempt`)."""
    from loraplan.compiler.catalog import alias_evidence, lookup
    from loraplan.compiler.sources.hf_cache import find_cached_config, is_hub_id

    attempt = attempt or _Attempt(name, None)
    local = _local_path(name, attempt.base_dir)
    if local is not None:
        return _config_route("config.json", name, local, model_class, allow_torch, attempt,
                             {"kind": "file", "path": str(local)})
    p = Path(name).expanduser()
    try:
        if p.is_dir():
            attempt.reasons.append(f"folder {p} has no config.json")
    except (OSError, ValueError):  # a name too long for a path, a NUL byte: not a folder
        pass
    entry = lookup(name)
    if entry is not None:
        origin: dict[str, Any] = {"kind": "catalog", "entry": entry.name, "config": entry.config_file}
        alias = next((a for a in entry.aliases if a.lower() == name.strip().rstrip("/").lower()), None)
        if alias is not None:
            origin.update(alias=alias, alias_of=entry.name, alias_evidence=alias_evidence(entry, alias))
        if entry.builds(model_class):
            return Route("catalog", entry.name, entry=entry, origin=origin)
        if allow_torch:
            return Route("catalog-config", entry.name, entry=entry, path=entry.hf_config_path, origin=origin)
        attempt.reasons.append(
            f"the catalog's {entry.name} is {entry.model_class}; building {model_class} needs transformers"
        )
        return None
    revision = attempt.revision or "main"
    try:
        cached = find_cached_config(name, revision)
    except (OSError, ValueError):  # the cache path such a name makes is too long: it is not cached
        cached = None
    if cached is not None:
        origin = {"kind": "hf-cache", "path": str(cached), "revision": revision, "commit": cached.parent.name}
        return _config_route("hf-cache", name, cached, model_class, allow_torch, attempt, origin)
    if network and is_hub_id(name) and not looks_like_path(name):
        from loraplan.compiler.sources.hub import fetch_config

        try:
            got = fetch_config(name, attempt.revision)
        except ResolveError as exc:
            attempt.hub_error = exc
            return None
        origin = {"kind": "hub", "path": str(got.path), "revision": got.revision, "commit": got.commit,
                  "endpoint": got.endpoint}
        return _config_route("hub", name, got.path, model_class, allow_torch, attempt, origin)
    return None


def _build(route: Route, model_class: str | None) -> Architecture:
    from loraplan.compiler.catalog import load_catalog_architecture
    from loraplan.compiler.sources.from_config import from_config_json

    if route.kind == "catalog":
        arch = load_catalog_architecture(route.entry)
        if route.path is not None:  # a local copy of a catalog config: name it as the user did
            arch.name = route.name
    else:
        origin = {"catalog-config": "catalog", "hf-cache": "hf-cache", "hub": "hub"}.get(route.kind, "config.json")
        source: Any = route.data if route.data is not None else route.path
        arch = from_config_json(source, model_class, name=route.name, origin=origin)
        if route.entry is not None and route.entry.variant:
            from loraplan.compiler.variants import apply_variant

            arch = apply_variant(arch, route.entry.variant)
    arch.origin = _with_quantization(route)
    return arch


def _with_quantization(route: Route) -> dict:
    """The origin, plus the checkpoint's stored format (config.json's quantization_config)."""
    from loraplan.compiler.prequantized import stored_format

    origin = {**route.origin, "name": route.name}
    data = route.data
    if data is None:
        path = route.path or (route.entry.hf_config_path if route.entry is not None else None)
        data = _read(path) if path is not None else None
    fmt = stored_format(data, origin.get("alias") or route.name)
    if fmt is not None:
        origin["quantization"] = fmt
    return origin


def _locate(diags: list[Diagnostic], attempt: _Attempt, source: SourceDoc | None) -> list[Diagnostic]:
    if source is None or attempt.key is None:
        return diags
    span = source.span(attempt.key)
    return [d.at(span, source.file) for d in diags]


def _where(attempt: _Attempt) -> str:
    return {("architecture",): "architecture", ("base_model",): "base_model"}.get(attempt.key or (), "--arch")


def _options(allow_torch: bool) -> str:
    from loraplan.compiler.catalog import list_catalog

    options = (
        f"set `architecture:` (or pass --arch) to a catalog name (`loraplan archs` lists {len(list_catalog())}), "
        "a local config.json or a model folder containing one"
    )
    if not allow_torch:
        options += "; local configs need torch and transformers (pip install 'loraplan[hf]')"
    return options


def _unresolved(attempt: _Attempt, model_class: str | None, allow_torch: bool, network: bool) -> Diagnostic:
    from loraplan.compiler.catalog import suggest
    from loraplan.compiler.sources.hub import user_offline

    message = f"{_where(attempt)} '{attempt.name}' cannot be resolved"
    reasons = list(attempt.reasons) or ["not in the bundled catalog, not a local config.json or model folder, "
                                        "not in the HF cache"]
    if not network and user_offline():
        reasons.append("HF_HUB_OFFLINE is set, so the hub was not asked")
    message += ": " + "; ".join(reasons)
    close = suggest(attempt.name)
    parts = [f"did you mean {' or '.join(repr(c) for c in close)}?"] if close else []
    parts.append(_options(allow_torch))
    return Diagnostic("LP501", "error", message, hint=" ".join(parts))


def network_default() -> bool:
    """`plan` and the API go to the hub unless the user set HF_HUB_OFFLINE."""
    from loraplan.compiler.sources.hub import user_offline

    return not user_offline()


def resolve_architecture(
    config: Config,
    override: str | None = None,
    source: SourceDoc | None = None,
    *,
    allow_torch: bool = True,
    network: bool | None = None,
) -> Architecture:
    """The Architecture `config` targets; ResolveError (located) when there is none.

    network: fetch a hub id's config.json when it is neither bundled nor cached (None: unless
    HF_HUB_OFFLINE is set).
    """
    attempt = _request(config, override, source)
    net = network_default() if network is None else network
    route = find_route(attempt.name, config.model_class, allow_torch, attempt, network=net)
    if route is None:
        raise_unresolved(attempt, config, source, allow_torch, net)
    return _build_located(route, attempt, config, source)


def _build_located(route: Route, attempt: _Attempt, config: Config, source: SourceDoc | None) -> Architecture:
    try:
        arch = _build(route, config.model_class)
    except LoraplanError as exc:
        diags = exc.diagnostics or [Diagnostic("LP512", "error", str(exc))]
        diags = [d if attempt.name in d.message else replace(d, message=f"{attempt.name}: {d.message}") for d in diags]
        located = _locate(diags, attempt, source)
        raise ResolveError(located[0].message, located) from None
    return with_variant(arch, config, source)


def transformers_importable() -> bool:
    """Whether a config.json could be built here (found, not imported: validate stays light)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
    except (ImportError, ValueError):
        return False


def resolve_for_check(
    config: Config, override: str | None, source: SourceDoc | None, *, network: bool = False
) -> tuple[Architecture | None, list[Diagnostic]]:
    """`validate`'s resolution: (architecture, []) or (None, [LP520 "targets not checked"]).

    Catalog entries need no torch; a config.json (local, cached, or fetched when `network`)
    imports transformers only then. A path or hub answer that is wrong is an error (ResolveError),
    a model that is merely out of reach is the LP520 warning, located at the key that named it.
    """
    attempt = _request(config, override, source)
    torch_ok = transformers_importable()
    route = find_route(attempt.name, config.model_class, torch_ok, attempt, network=network)
    if route is not None:
        return _build_located(route, attempt, config, source), []
    if attempt.hub_error is not None or (looks_like_path(attempt.name) and attempt.key != ("base_model",)):
        raise_unresolved(attempt, config, source, torch_ok, network)
    return None, _locate([not_checked(attempt, torch_ok, network)], attempt, source)


def not_checked(attempt: _Attempt, torch_ok: bool, network: bool) -> Diagnostic:
    """LP520: what was not checked, why, and how to have it checked."""
    from loraplan.compiler.catalog import suggest

    why = "; ".join(attempt.reasons) if attempt.reasons else (
        "not in the bundled catalog, not a local config.json or model folder, not in the local HF cache"
        + ("" if network else " (validate stays offline unless --online)"))
    message = (f"targets not checked: {_where(attempt)} '{attempt.name}' has no architecture here: {why}; "
               "target_modules, layers and memory were not verified")
    how = []
    close = suggest(attempt.name)
    if close:
        how.append(f"did you mean {' or '.join(repr(c) for c in close)}?")
    if not torch_ok and attempt.reasons:
        how.append("pip install 'loraplan[hf]' (torch, transformers) to build it")
    if not network:
        how.append("`loraplan validate --online` fetches its config.json from the hub (HF_ENDPOINT, HF_TOKEN)")
    how.append("or pass --arch (or set `architecture:`) to a config.json, a model folder or a catalog name; "
               "--strict fails on this")
    return Diagnostic("LP520", "warning", message, hint="; ".join(how))


def raise_unresolved(attempt: _Attempt, config: Config, source: SourceDoc | None, allow_torch: bool,
                     network: bool) -> None:
    if attempt.hub_error is not None:
        from loraplan.compiler.catalog import suggest

        close = suggest(attempt.name)
        diags = list(attempt.hub_error.diagnostics)
        if close and diags and diags[0].code in ("LP521", "LP525"):
            diags[0] = replace(diags[0], hint=f"did you mean {' or '.join(repr(c) for c in close)}? {diags[0].hint}")
        located = _locate(diags, attempt, source)
        raise ResolveError(located[0].message, located)
    diag = _unresolved(attempt, config.model_class, allow_torch, network)
    raise ResolveError(diag.message, _locate([diag], attempt, source))


def with_variant(arch: Architecture, config: Config, source: SourceDoc | None) -> Architecture:
    """The module tree the training tool builds when the config asks for a patched variant."""
    if not config.architecture_variant:
        return arch
    from loraplan.compiler.variants import VariantError, apply_variant

    try:
        origin = arch.origin
        arch = apply_variant(arch, config.architecture_variant)
        arch.origin = {**origin, "variant": config.architecture_variant}
        return arch
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
    except Exception:  # a cheap yes/no: any surprise means "not offline"
        return False
