"""The bundled catalog: published config.json files and their manifests, looked up with no torch.

`configs/` holds the raw configs (`<org>--<name>.json`, plus `derived/` and `tiny/` copied from the
shared corpus), `sources*.tsv` their provenance and the aliases each is known by (mirrors,
quantised re-uploads), `manifests/` what `regenerate` built from each config with transformers,
and `manifests/index.json` the summary `loraplan archs` lists. Names are matched case-insensitively:
hub id, any alias, the file name (`org--name`), or the bare name after '/' when only one entry has it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from loraplan.compiler.architecture import Architecture

CATALOG_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = CATALOG_DIR / "configs"
MANIFESTS_DIR = CATALOG_DIR / "manifests"
INDEX_FILE = MANIFESTS_DIR / "index.json"
SOURCE_COLUMNS = ("file", "hub_id", "aliases", "source_repo", "source_path", "commit", "note")
_ALIAS_SPLIT = re.compile(r"[,;\s]+")


@dataclass(frozen=True)
class SourceRow:
    """One provenance row of a sources*.tsv file."""

    file: str
    hub_id: str
    aliases: tuple[str, ...]
    source_repo: str
    source_path: str
    commit: str
    note: str
    tsv: str
    line: int


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog architecture: a config file, its manifest and the names it answers to."""

    name: str  # the hub id
    config_file: str  # relative to configs/
    manifest_file: str  # relative to manifests/
    model_type: str
    model_class: str
    num_layers: int
    total_params: int
    num_modules: int
    transformers_version: str | None
    config_sha256: str
    aliases: tuple[str, ...] = ()
    auto_classes: dict[str, str] = field(default_factory=dict)  # AutoModelFor... -> class it builds
    sources: tuple[SourceRow, ...] = ()
    variant: str | None = None  # a patched module tree (loraplan.compiler.variants) of base_config
    base_config: str | None = None

    @property
    def config_path(self) -> Path:
        return CONFIGS_DIR / self.config_file

    @property
    def hf_config_path(self) -> Path:
        """The published config.json transformers builds (a variant's base config)."""
        return CONFIGS_DIR / (self.base_config or self.config_file)

    @property
    def manifest_path(self) -> Path:
        return MANIFESTS_DIR / self.manifest_file

    def builds(self, model_class: str | None) -> bool:
        """Whether `model_class` (a class or an AutoModel name) gives this entry's manifest."""
        if not model_class or model_class == self.model_class:
            return True
        return self.auto_classes.get(model_class) == self.model_class


def canonical_sha256(data: Any) -> str:
    """Hash of a config's content, independent of indentation and key order."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_file(name: str) -> str:
    """A TSV `file` cell as a path relative to configs/ (it may name the shared corpus layout)."""
    name = name.strip().replace("\\", "/")
    if "hf-configs/" in name:  # a path into the shared corpus: same layout as configs/
        name = name.split("hf-configs/", 1)[1]
    for prefix in ("./", "configs/", "loraplan/compiler/catalog/configs/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def default_hub_id(config_file: str) -> str:
    """`derived/org--name.json` -> `org/name` (used when no TSV row names the file)."""
    stem = Path(config_file).name.removesuffix(".json")
    return stem.replace("--", "/", 1)


def read_sources(directory: Path = CATALOG_DIR) -> list[SourceRow]:
    """Every row of every sources*.tsv (sources-shared.tsv first), in file order."""
    files = sorted(directory.glob("sources*.tsv"), key=lambda p: (p.name != "sources-shared.tsv", p.name))
    rows: list[SourceRow] = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        header = [h.strip().lower() for h in lines[0].split("\t")]
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            cells = {k: v.strip() for k, v in zip(header, line.split("\t"))}
            aliases = tuple(a for a in _ALIAS_SPLIT.split(cells.get("aliases", "")) if a)
            rows.append(
                SourceRow(
                    normalise_file(cells.get("file", "")),
                    cells.get("hub_id", ""),
                    aliases,
                    cells.get("source_repo", ""),
                    cells.get("source_path", ""),
                    cells.get("commit", ""),
                    cells.get("note", ""),
                    path.name,
                    number,
                )
            )
    return rows


def read_index() -> dict[str, Any]:
    try:
        return json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": 0, "entries": {}, "failed": {}}


@dataclass
class Catalog:
    """Entries and the name maps used by lookup."""

    entries: list[CatalogEntry]
    names: dict[str, set[str]]  # lower-case name/alias/file stem -> entry names
    bare: dict[str, set[str]]  # lower-case part after '/' -> entry names
    by_name: dict[str, CatalogEntry]
    by_sha: dict[str, CatalogEntry]
    orphan_rows: list[SourceRow]  # rows naming a config the catalog does not have
    conflicts: dict[str, set[str]]  # a name that points at several entries


def build_catalog(index: dict[str, Any], rows: list[SourceRow]) -> Catalog:
    rows_by_file: dict[str, list[SourceRow]] = {}
    for row in rows:
        rows_by_file.setdefault(row.file, []).append(row)
    entries: list[CatalogEntry] = []
    for config_file, info in index.get("entries", {}).items():
        mine = rows_by_file.get(config_file, [])
        hub_ids = [r.hub_id for r in mine if r.hub_id]
        name = hub_ids[0] if hub_ids else default_hub_id(config_file)
        aliases: list[str] = []
        for alias in [*hub_ids[1:], *(a for r in mine for a in r.aliases)]:
            if alias.lower() != name.lower() and alias.lower() not in {a.lower() for a in aliases}:
                aliases.append(alias)
        entries.append(
            CatalogEntry(
                name=name,
                config_file=config_file,
                manifest_file=info["manifest"],
                model_type=info["model_type"],
                model_class=info["model_class"],
                num_layers=info["num_layers"],
                total_params=info["total_params"],
                num_modules=info["num_modules"],
                transformers_version=info.get("transformers_version"),
                config_sha256=info["config_sha256"],
                aliases=tuple(aliases),
                auto_classes=dict(info.get("auto_classes", {})),
                sources=tuple(mine),
                variant=info.get("variant"),
                base_config=info.get("base_config"),
            )
        )
    entries.sort(key=lambda e: e.name.lower())
    names: dict[str, set[str]] = {}
    bare: dict[str, set[str]] = {}
    for e in entries:
        stem = Path(e.config_file).name.removesuffix(".json")
        for key in (e.name, *e.aliases, stem, e.config_file):
            names.setdefault(key.lower(), set()).add(e.name)
        for key in (e.name, *e.aliases):
            if "/" in key:
                bare.setdefault(key.rsplit("/", 1)[1].lower(), set()).add(e.name)
    known = {e.config_file for e in entries}
    orphans = [r for r in rows if r.file not in known]
    conflicts = {k: v for k, v in names.items() if len(v) > 1}
    return Catalog(
        entries=entries,
        names=names,
        bare=bare,
        by_name={e.name: e for e in entries},
        by_sha={e.config_sha256: e for e in entries},
        orphan_rows=orphans,
        conflicts=conflicts,
    )


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The bundled catalog (read once per process)."""
    return build_catalog(read_index(), read_sources())


def list_catalog() -> list[CatalogEntry]:
    """Every catalog entry, sorted by hub id."""
    return list(catalog().entries)


def _clean(name: str) -> str:
    return name.strip().rstrip("/").lower()


def lookup(name: str) -> CatalogEntry | None:
    """The entry a hub id, alias, file name or unambiguous bare model name refers to."""
    if not isinstance(name, str) or not name.strip():
        return None
    cat = catalog()
    key = _clean(name)
    hits = cat.names.get(key)
    if not hits and "/" not in key:
        hits = cat.bare.get(key)
    if hits and len(hits) == 1:
        return cat.by_name[next(iter(hits))]
    return None


def lookup_config_content(data: Any) -> CatalogEntry | None:
    """The entry whose config has exactly this content (a local copy of a catalog config)."""
    sha = canonical_sha256(data)
    return catalog().by_sha.get(sha) or _by_file_sha().get(sha)


@lru_cache(maxsize=1)
def _by_file_sha() -> dict[str, CatalogEntry]:
    """The same, hashed from the config files themselves: the index's `config_sha256` of a config
    with nested dicts was taken after transformers had rewritten them (rope_scaling) in place."""
    out: dict[str, CatalogEntry] = {}
    for entry in catalog().entries:
        if entry.variant:
            continue
        try:
            out.setdefault(canonical_sha256(json.loads(entry.config_path.read_text(encoding="utf-8"))), entry)
        except (OSError, ValueError):
            continue
    return out


def suggest(name: str, limit: int = 3) -> list[str]:
    """Catalog names close to `name` (did-you-mean), best first."""
    cat = catalog()
    key = _clean(name)
    spelled: dict[str, str] = {}
    for e in cat.entries:
        for n in (e.name, *e.aliases):
            spelled.setdefault(n.lower(), n)
    found = difflib.get_close_matches(key, list(spelled), n=limit, cutoff=0.6)
    if not found and "/" in key:  # the org may be wrong or unknown: compare bare names
        tail = key.rsplit("/", 1)[1]
        bare = {n.rsplit("/", 1)[1]: n for n in spelled if "/" in n}
        found = [bare[b] for b in difflib.get_close_matches(tail, list(bare), n=limit, cutoff=0.7)]
    return [spelled[f] for f in found]


def alias_evidence(entry: CatalogEntry, alias: str, limit: int = 320) -> str:
    """Why `alias` is planned as `entry`: the evidence its sources*.tsv row gives, shortened."""
    for row in entry.sources:
        note = row.note.strip().strip('"')
        hits = list(re.finditer(rf"(ALIAS\s+)?{re.escape(alias)}(?![\w.-])", note, re.IGNORECASE))
        if not hits:
            continue
        hit = next((h for h in hits if h.group(1)), hits[0])  # the row's own "ALIAS <name>" paragraph first
        text = note[hit.end():].lstrip(" :")
        end = text.find(" ALIAS ")
        text = text[:end] if end > 0 else text
        if len(text) > limit:  # whole clauses up to the limit
            cut = max(text.rfind(". ", 0, limit), text.rfind("; ", 0, limit))
            text = text[: cut + 1] if cut > 40 else text[:limit].rstrip() + "..."
        return f"{text.strip()} ({row.tsv}:{row.line})"
    return f"listed as an alias in the catalog's sources ({', '.join(sorted({r.tsv for r in entry.sources}))})"


@lru_cache(maxsize=64)
def _manifest_data(manifest_file: str) -> dict[str, Any]:
    return json.loads((MANIFESTS_DIR / manifest_file).read_text(encoding="utf-8"))


def load_catalog_architecture(name: str | CatalogEntry) -> Architecture:
    """Expand a catalog entry's manifest into an Architecture (json + stdlib: no torch)."""
    from loraplan.compiler.catalog.manifest import decode

    entry = name if isinstance(name, CatalogEntry) else lookup(name)
    if entry is None:
        from loraplan.errors import ResolveError
        from loraplan.schema.diagnostic import Diagnostic

        close = suggest(str(name))
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        message = f"'{name}' is not in the bundled catalog"
        raise ResolveError(
            message,
            [Diagnostic("LP501", "error", message, hint=hint + "`loraplan archs` lists the catalog")],
        )
    return decode(_manifest_data(entry.manifest_file), entry.name, source="catalog")


__all__ = [
    "CatalogEntry",
    "SourceRow",
    "alias_evidence",
    "list_catalog",
    "load_catalog_architecture",
    "lookup",
    "lookup_config_content",
    "suggest",
]
