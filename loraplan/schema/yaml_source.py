"""YAML text -> plain data plus a position for every key and value.

PyYAML's composer gives nodes with marks; we build the Python value ourselves so that we can
report what PyYAML hides (duplicate keys, which it keeps last-wins) and bound the work alias
expansion can cause (alias bombs), and so that every later finding can point at `file:line:col`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loraplan.schema.diagnostic import Diagnostic, Span

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

Path_ = tuple  # a path into the data: keys (str) and list indices (int)


@dataclass
class SourceDoc:
    """A parsed YAML document and where each part of it sits in the file."""

    file: str
    text: str
    data: Any
    keys: dict[Path_, Span] = field(default_factory=dict)
    values: dict[Path_, Span] = field(default_factory=dict)

    def span(self, path: Path_, *, key: bool = False) -> Span | None:
        """Span of the value (or key) at `path`, else of the nearest ancestor that exists."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values and not key:
                return self.values[path]
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), Span(1, 1))

    def key_span(self, path: Path_) -> Span | None:
        return self.span(path, key=True)

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node, reason: str):
        self.node = node
        self.reason = reason


def _span(node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def _mark_span(mark: Any) -> Span:
    if mark is None:
        return Span(1, 1)
    return Span(mark.line + 1, mark.column + 1)


def _diag(code: str, message: str, file: str, span: Span | None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code=code, severity="error", message=message, file=file, hint=hint).at(span)


class _Builder:
    """Turns a composed node graph into Python data, recording spans and findings."""

    def __init__(self, loader: yaml.SafeLoader, doc: SourceDoc):
        self.loader = loader
        self.doc = doc
        self.count = 0
        self.diagnostics: list[Diagnostic] = []
        self.active: set[int] = set()

    def build(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(node, f"more than {MAX_NODES} values after alias expansion")
        if depth > MAX_DEPTH:
            raise _TooLarge(node, f"nesting deeper than {MAX_DEPTH} levels")
        if id(node) in self.active:
            raise _TooLarge(node, "an alias refers to a node that contains it (recursive alias)")
        if path not in self.doc.values:
            self.doc.values[path] = _span(node)
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        first_seen: dict[Any, Span] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    value = self.build(src, path, depth + 1)
                    if isinstance(value, dict):
                        for k, v in value.items():
                            merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.diagnostics.append(
                    _diag("LP109", "mapping key is a collection, not a plain name", self.doc.file, _span(key_node))
                )
                continue
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            kspan = _span(key_node)
            if key in first_seen:
                first = first_seen[key]
                self.diagnostics.append(
                    _diag(
                        "LP102",
                        f"duplicate key '{key}' (first at line {first.line}); YAML keeps only this last one",
                        self.doc.file,
                        kspan,
                        hint=f"remove one of the two '{key}' entries",
                    )
                )
            first_seen[key] = kspan
            child = (*path, key)
            self.doc.keys[child] = kspan
            self.doc.values[child] = _span(value_node)
            result[key] = self.build(value_node, child, depth + 1)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result


def decode(raw: bytes, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes -> text; invalid UTF-8 is a located finding, a BOM is accepted."""
    if len(raw) > MAX_FILE_BYTES:
        return None, [
            _diag(
                "LP107",
                f"file is {len(raw):,} bytes; loraplan reads configs up to {MAX_FILE_BYTES:,} bytes",
                file,
                Span(1, 1),
                hint="a LoRA config is a few kilobytes: is this the right file?",
            )
        ]
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")) + 1
        return None, [
            _diag(
                "LP105",
                f"invalid UTF-8 byte 0x{raw[exc.start]:02x}",
                file,
                Span(line, col),
                hint="save the file as UTF-8",
            )
        ]


def parse_text(text: str, file: str) -> tuple[SourceDoc | None, list[Diagnostic]]:
    """Parse YAML text into a SourceDoc. Never raises: every problem becomes a Diagnostic."""
    doc = SourceDoc(file=file, text=text, data=None)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        return None, decode(b" " * (MAX_FILE_BYTES + 1), file)[1]
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = (exc.problem or exc.context or "invalid YAML").strip()
            if exc.context and exc.problem:
                message = f"{exc.problem} ({exc.context})"
            return None, [_diag("LP101", f"YAML syntax error: {message}", file, _mark_span(mark))]
        except yaml.YAMLError as exc:
            return None, [_diag("LP101", f"YAML error: {exc}", file, Span(1, 1))]
        except RecursionError:
            return None, [_diag("LP106", "YAML nesting too deep to read", file, Span(1, 1))]
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value == "" and node.tag.endswith(":null")):
            return None, [
                _diag("LP103", "file is empty", file, Span(1, 1), hint="a config needs at least base_model and lora")
            ]
        builder = _Builder(loader, doc)
        try:
            data = builder.build(node, ())
        except _TooLarge as exc:
            return None, [
                _diag(
                    "LP106",
                    f"YAML aliases expand too far: {exc.reason}",
                    file,
                    _span(exc.node),
                    hint="write the values out instead of nesting aliases",
                )
            ]
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            return None, [_diag("LP101", f"YAML error: {exc.problem or exc}", file, _mark_span(mark))]
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            return None, [_diag("LP101", f"YAML value cannot be read: {exc}", file, _span(node))]
        except RecursionError:
            return None, [_diag("LP106", "YAML nesting too deep to read", file, Span(1, 1))]
    finally:
        loader.dispose()
    doc.data = data
    diagnostics = builder.diagnostics
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__} value"
        diagnostics.append(
            _diag(
                "LP104",
                f"top level is {kind}; a config is a mapping of keys to values",
                file,
                _span(node),
                hint="start with `base_model: ...` and a `lora:` block",
            )
        )
        return None, diagnostics
    return doc, diagnostics


def read_source(path: str | Path, display: str | None = None) -> tuple[SourceDoc | None, list[Diagnostic]]:
    """Read and parse a YAML file; unreadable, oversized or non-UTF-8 files are findings."""
    name = display or str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, decode(b" " * (MAX_FILE_BYTES + 1), name)[1]
        raw = p.read_bytes()
    except OSError as exc:
        return None, [_diag("LP108", f"cannot read file: {exc.strerror or exc}", name, None)]
    text, diagnostics = decode(raw, name)
    if text is None:
        return None, diagnostics
    return parse_text(text, name)
