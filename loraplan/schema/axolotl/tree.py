"""The native tree being built from an Axolotl config, with the source span of every part.

Each native value remembers where it came from in the user's file (the Axolotl key and value,
or the flag it was derived from) and the name the user wrote, so every later finding points at
the user's own line and speaks the user's words.
"""

from __future__ import annotations

from typing import Any

from loraplan.schema.diagnostic import Diagnostic, Severity, Span
from loraplan.schema.yaml_source import SourceDoc

_MISSING = object()


class Tree:
    """Native data plus `keys`/`values` spans (native path -> source span) and labels."""

    def __init__(self, src: SourceDoc):
        self.src = src
        self.data: dict[str, Any] = {}
        self.keys: dict[tuple, Span] = {}
        self.values: dict[tuple, Span] = {}
        self.labels: dict[tuple, str] = {}
        self.diagnostics: list[Diagnostic] = []
        if () in src.values:
            self.values[()] = src.values[()]

    # -- reading the source -------------------------------------------------------------------
    def raw(self, key: str, default: Any = None) -> Any:
        """The value the user wrote for top-level `key`; null counts as unset (Axolotl's reading)."""
        value = self.src.data.get(key, _MISSING)
        return default if value is _MISSING or value is None else value

    def given(self, key: str) -> bool:
        return self.raw(key) is not None

    def key_span(self, src_path: tuple) -> Span | None:
        return self.src.keys.get(src_path) or self.src.values.get(src_path)

    def value_span(self, src_path: tuple) -> Span | None:
        return self.src.values.get(src_path) or self.src.keys.get(src_path)

    # -- writing the native tree --------------------------------------------------------------
    def put(self, path: tuple, value: Any, src_path: tuple | None = None, label: str | None = None,
            *, register_key: bool = True) -> None:
        """Set native `path` to `value`, located at the source key/value `src_path`.

        `register_key=False` keeps the value but does not mark the key as written by the user
        (rules that only blame keys the user wrote then leave it alone).
        """
        node = self.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        if src_path is None:
            return
        name = label or ".".join(str(p) for p in src_path)
        self.labels[path] = name
        key_span, value_span = self.key_span(src_path), self.value_span(src_path)
        if register_key and key_span is not None:
            self.keys[path] = key_span
        if value_span is not None:
            self.values[path] = value_span
        self._children(path, value, src_path, name)

    def _children(self, path: tuple, value: Any, src_path: tuple, name: str) -> None:
        """Spans of list items and mapping entries that exist at the same place in the source."""
        if isinstance(value, list):
            for i, item in enumerate(value):
                child, src_child = (*path, i), (*src_path, i)
                if src_child in self.src.values:
                    self.values[child] = self.src.values[src_child]
                    self.labels[child] = f"{name}[{i}]"
                    self._children(child, item, src_child, f"{name}[{i}]")
        elif isinstance(value, dict):
            for k, item in value.items():
                child, src_child = (*path, k), (*src_path, k)
                if src_child in self.src.keys:
                    self.keys[child] = self.src.keys[src_child]
                    self.values[child] = self.src.values.get(src_child, self.src.keys[src_child])
                    self.labels[child] = f"{name}.{k}"
                    self._children(child, item, src_child, f"{name}.{k}")

    def get(self, path: tuple, default: Any = None) -> Any:
        node: Any = self.data
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    # -- findings -----------------------------------------------------------------------------
    def report(self, code: str, severity: Severity, message: str, src_path: tuple | None,
               hint: str | None = None, *, on_value: bool = False) -> None:
        """A finding at the source key (or value) `src_path`; the file start when None."""
        if src_path is None:
            span = self.src.values.get((), Span(1, 1))
        else:
            span = self.value_span(src_path) if on_value else self.key_span(src_path)
        self.diagnostics.append(Diagnostic(code, severity, message, hint=hint).at(span, self.src.file))

    def native_doc(self) -> SourceDoc:
        return SourceDoc(file=self.src.file, text=self.src.text, data=self.data, keys=self.keys,
                         values=self.values)
