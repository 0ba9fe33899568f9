"""YAML text -> plain data plus a position for every key and value.

PyYAML's composer gives nodes with marks; we build the Python value ourselves so that we can
report what PyYAML hides (duplicate keys, which it keeps last-wins) and bound the work alias
expansion can cause (alias bombs), and so that every later finding can point at `file:line:col`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loraplan.schema.diagnostic import Diagnostic, Span
from loraplan.schema.safe_read import ReadRefused, read_bounded

MAX_FILE_BYTES = 1024 * 1024  # a LoRA config is a few kilobytes; the largest Axolotl example is 12 KB
MAX_NODES = 100_000  # values after alias expansion
MAX_DEPTH = 64
# Above this size the C parser (libyaml) is used when present: much faster, terser messages.
C_PARSER_BYTES = 256 * 1024

Path_ = tuple  # a path into the data: keys (str) and list indices (int)
# The line breaks YAML counts (and so PyYAML's marks): CRLF, CR, LF, NEL, LS, PS.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def split_lines(text: str) -> list[str]:
    """Lines as YAML numbers them (str.splitlines also breaks at \\v, \\f, ...; YAML does not)."""
    return _LINE_BREAK.split(text)


@dataclass
class SourceDoc:
    """A parsed YAML document and where each part of it sits in the file."""

    file: str
    text: str
    data: Any
    keys: dict[Path_, Span] = field(default_factory=dict)
    values: dict[Path_, Span] = field(default_factory=dict)

    def span(self, path: Path_, *, key: bool = False) -> Span | None:
        """Span of the value (or key) at `path`, else of the nearest ancestor that exists.

        An empty value (`lora:` with nothing after it) has no width, so its key is given instead.
        """
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values and not key:
                value = self.values[path]
                if _is_empty(value) and path in self.keys:
                    return self.keys[path]
                return value
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), Span(1, 1))

    def key_span(self, path: Path_) -> Span | None:
        return self.span(path, key=True)

    def line_text(self, line: int) -> str:
        lines = self.__dict__.get("_lines")
        if lines is None or self.__dict__.get("_lines_of") is not self.text:  # split once, not per finding
            lines = self.__dict__["_lines"] = split_lines(self.text)
            self.__dict__["_lines_of"] = self.text
        return lines[line - 1] if 0 < line <= len(lines) else ""


def _is_empty(span: Span) -> bool:
    return span.end_line == span.line and span.end_column == span.column


_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _BadScalar(Exception):
    def __init__(self, node: yaml.Node, error: Exception):
        self.node = node
        self.error = error


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


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__} value"
    )


class _Builder:
    """Turns a composed node graph into Python data, recording spans and findings."""

    def __init__(self, loader: Any, doc: SourceDoc):
        self.loader = loader
        self.doc = doc
        self.count = 0
        self.diagnostics: list[Diagnostic] = []
        self.active: set[int] = set()
        self.visited: set[int] = set()
        self.aliased = False  # whether a node was reached twice (alias expansion happened)

    def build(self, node: yaml.Node, path: Path_, depth: int = 0, merging: bool = False) -> Any:
        self.count += 1
        if id(node) in self.visited:
            self.aliased = True
        self.visited.add(id(node))
        if self.count > MAX_NODES:
            raise _TooLarge(node, f"more than {MAX_NODES:,} values")
        if depth > MAX_DEPTH:
            raise _TooLarge(node, f"nesting deeper than {MAX_DEPTH} levels")
        if id(node) in self.active:
            raise _TooLarge(node, "an alias refers to a node that contains it (recursive alias)")
        if path not in self.doc.values:
            self.doc.values[path] = _span(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if node.tag not in _PLAIN_COLLECTION_TAGS:
            self._tagged(node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i), depth + 1, merging) for i, item in enumerate(node.value)]
            return self._mapping(node, path, depth, merging)
        finally:
            self.active.discard(id(node))

    def _tagged(self, node: yaml.Node) -> None:
        """LP110: a tag on a mapping or list (`!!set`, `!!omap`, `!custom`) would change what the data
        means to a YAML library that honours it; loraplan reads it as plain data, so it says so."""
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        what = "mapping" if isinstance(node, yaml.MappingNode) else "list"
        self.diagnostics.append(
            _diag("LP110", f"YAML tag `{tag}` on a {what}: a config holds plain mappings and lists",
                  self.doc.file, _span(node), hint=f"remove `{tag}`")
        )

    def scalar(self, node: yaml.ScalarNode) -> Any:
        """The Python value of a scalar; PyYAML's constructors raise anything on odd input."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # `!!int ''` raises IndexError, `!!float x` ValueError, ...
            raise _BadScalar(node, exc) from None

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int, merging: bool) -> dict:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Span] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.diagnostics.append(
                    _diag("LP109", "mapping key is a collection, not a plain name", self.doc.file, _span(key_node))
                )
                continue
            key = self.scalar(key_node)
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
            if merging:
                self.doc.keys.setdefault(child, kspan)
                self.doc.values.setdefault(child, _span(value_node))
            else:
                self.doc.keys[child] = kspan
                self.doc.values[child] = _span(value_node)
            result[key] = self.build(value_node, child, depth + 1, merging)
        # `<<: *anchor` merges: explicit keys win, then earlier merge sources. Positions of merged
        # keys point at the anchor's text, and never replace those of keys written here.
        for value_node in merges:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    self.diagnostics.append(
                        _diag("LP101", "a merge key `<<` needs a mapping (or a list of mappings) to merge",
                              self.doc.file, _span(src))
                    )
                    continue
                value = self.build(src, path, depth + 1, merging=True)
                for k, v in value.items():
                    result.setdefault(k, v)
        return result


def decode(raw: bytes, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes -> text; invalid UTF-8 is a located finding, a BOM is accepted."""
    if len(raw) > MAX_FILE_BYTES:
        return None, [_too_big(len(raw), file)]
    body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw  # a BOM is not text (nor a column)
    try:
        return body.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        before = body[: exc.start].decode("utf-8")  # valid up to the bad byte
        return None, [
            _diag(
                "LP105",
                f"invalid UTF-8 byte 0x{body[exc.start]:02x}",
                file,
                _position(before, len(before)),
                hint="save the file as UTF-8",
            )
        ]


def _too_big(size: int, file: str) -> Diagnostic:
    return _diag(
        "LP107",
        f"file is {size:,} bytes; loraplan reads configs up to {MAX_FILE_BYTES:,} bytes",
        file,
        Span(1, 1),
        hint="a LoRA config is a few kilobytes: is this the right file?",
    )


def _position(text: str, index: int) -> Span:
    lines = split_lines(text[:index])
    return Span(len(lines), len(lines[-1]) + 1)


def _syntax_error(exc: Exception, file: str, text: str) -> Diagnostic:
    """A PyYAML (or libyaml) exception -> LP101 at the place it names."""
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = (exc.problem or "").strip()
        context = (exc.context or "").strip()
        mark, where = exc.problem_mark, ""
        lines = len(split_lines(text.rstrip("\r\n\x85\u2028\u2029"))) if text.strip() else 0
        if exc.context_mark is not None and (mark is None or mark.line >= lines):
            mark = exc.context_mark  # the problem is "end of file": point where the open thing started
        elif context and exc.context_mark is not None:
            where = f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        message = f"{problem} ({context}{where})" if problem and context else (problem or context or "invalid YAML")
        if "another document" in problem:
            message = "the file holds more than one YAML document (`---`); a config is a single document"
        kind = "error" if isinstance(exc, yaml.constructor.ConstructorError) else "syntax error"
        span = _mark_span(mark)
        if mark is not None and mark.line >= lines > 0:
            # Still at the end of the file: point just after the last text, where something is missing.
            content = split_lines(text.rstrip("\r\n\x85\u2028\u2029"))
            span = Span(lines, len(content[-1]) + 1)
        message = message.replace("'<stream end>'", "the end of the file")
        return _diag("LP101", f"YAML {kind}: {message}", file, span, hint=_syntax_hint(problem))
    position = getattr(exc, "position", None)
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(position, int):
        char = getattr(exc, "character", None)
        what = f"character #x{char:04x}" if isinstance(char, int) else "character"
        return _diag("LP101", f"YAML syntax error: unacceptable {what} (control characters are not allowed)",
                     file, _position(text, position), hint="remove the control character")
    return _diag("LP101", f"YAML error: {exc}", file, Span(1, 1))


def _syntax_hint(problem: str) -> str | None:
    """A help line for the YAML mistakes people make most: tabs and indentation."""
    if "'\\t'" in problem or "\t" in problem:
        return "YAML indents with spaces, never tabs: replace the tab with spaces"
    if "mapping values are not allowed here" in problem:
        return ("check this line's indentation: a key lines up with the other keys of its block; "
                "a value that contains ': ' needs quotes")
    if "expected <block end>" in problem or "did not find expected key" in problem:
        return "a line here is indented differently from the others of its block: line the keys up"
    return None


class _DepthLimitedLoader(yaml.SafeLoader):
    """The pure-Python loader, refusing deep nesting while composing (before recursion gets costly)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _TooDeep(Exception):
    def __init__(self, mark: Any):
        self.mark = mark


def _make_loader(text: str) -> Any:
    if len(text) > C_PARSER_BYTES and hasattr(yaml, "CSafeLoader"):
        return yaml.CSafeLoader(text)
    return _DepthLimitedLoader(text)


def parse_text(text: str, file: str) -> tuple[SourceDoc | None, list[Diagnostic]]:
    """Parse YAML text into a SourceDoc. Never raises: every problem becomes a Diagnostic."""
    doc = SourceDoc(file=file, text=text, data=None)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return None, [_too_big(size, file)]
    surrogate = _SURROGATE.search(text)  # only from callers passing str: decode() never makes one
    if surrogate:
        return None, [_diag("LP105", "text holds a lone surrogate code point", file,
                            _position(text, surrogate.start()))]
    loader = builder = None
    try:
        loader = _make_loader(text)
        node = loader.get_single_node()
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value == "" and node.tag.endswith(":null")):
            has_comments = bool(text.strip().strip("-").strip())
            message = "file has only comments, no config" if has_comments else "file is empty"
            return None, [
                _diag("LP103", message, file, Span(1, 1), hint="a config needs at least base_model and lora")
            ]
        builder = _Builder(loader, doc)
        data = builder.build(node, ())
    except _TooLarge as exc:
        aliased = "recursive" in exc.reason or (builder is not None and builder.aliased)
        if aliased:
            return None, [
                _diag(
                    "LP106",
                    f"YAML aliases expand too far: {exc.reason}",
                    file,
                    _span(exc.node),
                    hint="write the values out instead of nesting aliases",
                )
            ]
        return None, [_diag("LP107", f"file too large to be a config: {exc.reason}", file, _span(exc.node))]
    except _TooDeep as exc:
        return None, [_diag("LP107", f"YAML nesting deeper than {MAX_DEPTH} levels", file, _mark_span(exc.mark))]
    except RecursionError:
        return None, [_diag("LP107", "YAML nesting too deep to read", file, Span(1, 1))]
    except yaml.YAMLError as exc:
        return None, [_syntax_error(exc, file, text)]
    except _BadScalar as exc:
        text_of = exc.node.value if len(exc.node.value) <= 40 else exc.node.value[:37] + "..."
        tag = exc.node.tag.replace("tag:yaml.org,2002:", "!!")
        return None, [_diag("LP101", f"YAML value {text_of!r} cannot be read as {tag}: {exc.error or 'empty'}",
                            file, _span(exc.node))]
    except (ValueError, TypeError) as exc:  # e.g. text the C parser cannot encode
        return None, [_diag("LP101", f"YAML cannot be read: {exc}", file, Span(1, 1))]
    finally:
        if loader is not None:
            loader.dispose()
    doc.data = data
    diagnostics = builder.diagnostics
    if not isinstance(data, dict):
        diagnostics.append(
            _diag(
                "LP104",
                f"top level is {_kind(data)}; a config is a mapping of keys to values",
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
        raw = read_bounded(p, MAX_FILE_BYTES)
    except ReadRefused as exc:
        if exc.too_large:
            return None, [_too_big(_size(p), name)]
        return None, [_diag("LP108", f"cannot read file: it {exc.strerror}", name, Span(1, 1))]
    except OSError as exc:
        return None, [_diag("LP108", f"cannot read file: {exc.strerror or exc}", name, Span(1, 1))]
    text, diagnostics = decode(raw, name)
    if text is None:
        return None, diagnostics
    return parse_text(text, name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return MAX_FILE_BYTES + 1
