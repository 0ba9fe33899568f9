"""Collapse repeated layers: many module names with equal settings -> a few readable rows.

`model.layers.{0..31}.self_attn.{q,k,v,o}_proj` with one setting is 128 injections but one idea,
so the table, the markdown and `diff` show it as one row. Every row stands for exactly the cross
product of its parts (no name is added or lost), which is why two rows only merge when they differ
in one position: a numeric segment anywhere (index sets, written `0-31` or `0-3,8-11`) or the leaf
name (alternatives, written `{q,k}_proj`). Order is the input's: rows sort by their first member.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# A segment is ("i", frozenset of ints) for a numeric part or ("s", frozenset of names).
Segment = tuple[str, frozenset]


@dataclass(frozen=True)
class Group(Generic[T]):
    """One collapsed row: the rendered name pattern and the items it stands for, in input order."""

    pattern: str
    items: tuple[T, ...]

    @property
    def first(self) -> T:
        return self.items[0]

    @property
    def count(self) -> int:
        return len(self.items)


def _runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in sorted(set(indices)):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def index_runs(indices: Iterable[int]) -> str:
    """`0-31`, `0-3,8-11`, `3,7,11`: sorted, consecutive runs of two or more joined by `-`.

    A regular pattern of five or more runs (equal length, equal spacing: what hybrid models'
    interleaved layers give) is written with an ellipsis: `3,7,...,31`, `0-2,4-6,...,28-30`.
    """
    runs = _runs(indices)
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    if len(runs) >= 5:
        step, length = runs[1][0] - runs[0][0], runs[0][1] - runs[0][0]
        regular = all(b - a == length and a - runs[k - 1][0] == step for k, (a, b) in enumerate(runs) if k)
        if regular:
            parts = [parts[0], parts[1], "...", parts[-1]]
    return ",".join(parts)


def _common_start(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def brace(names: Sequence[str]) -> str:
    """`{q,k,v}_proj` from q_proj, k_proj, v_proj: shared prefix/suffix split only at `_` boundaries."""
    if len(names) == 1:
        return names[0]
    prefix = _common_start(names)
    prefix = prefix[: prefix.rfind("_") + 1]
    suffix = _common_start([n[::-1] for n in names])[::-1]
    suffix = suffix[suffix.find("_") :] if "_" in suffix else ""
    if any(len(n) <= len(prefix) + len(suffix) for n in names):
        suffix = ""
    if any(len(n) <= len(prefix) + len(suffix) for n in names):
        prefix = ""
    middles = [n[len(prefix) : len(n) - len(suffix)] for n in names]
    return f"{prefix}{{{','.join(middles)}}}{suffix}"


def _segment(part: str) -> Segment:
    return ("i", frozenset([int(part)])) if part.isdigit() else ("s", frozenset([part]))


def _segments(name: str, cache: dict[str, Segment]) -> tuple[Segment, ...]:
    """The name's parts as one-element sets (shared between names: models repeat the same parts)."""
    out = []
    for part in name.split("."):
        seg = cache.get(part)
        if seg is None:
            seg = cache[part] = _segment(part)
        out.append(seg)
    return tuple(out)


def _render(segs: tuple[Segment, ...], order: dict[str, int]) -> str:
    parts = []
    for kind, values in segs:
        if kind == "i":
            parts.append(index_runs(values))
        else:
            parts.append(brace(sorted(values, key=lambda v: (order.get(v, 0), v))))
    return ".".join(parts)


def _merge_at(rows: dict, pos: int, leaf_only: bool) -> bool:
    """Merge rows that agree everywhere except at `pos`; True when anything merged."""
    buckets: dict[Hashable, list] = {}
    for row_key in rows:
        segs, key = row_key
        if pos >= len(segs):
            continue
        kind = segs[pos][0]
        if (kind == "s") != leaf_only or (leaf_only and pos != len(segs) - 1):
            continue
        sig = (len(segs), segs[:pos], segs[pos + 1 :], key)
        buckets.setdefault(sig, []).append(row_key)
    merged = False
    for members in buckets.values():
        if len(members) < 2:
            continue
        merged = True
        segs, key = members[0]
        union = frozenset().union(*(m[0][pos][1] for m in members))
        items = [i for m in members for i in rows.pop(m)]
        new = ((*segs[:pos], (segs[pos][0], union), *segs[pos + 1 :]), key)
        rows.setdefault(new, []).extend(items)
    return merged


def collapse(
    items: Sequence[T], name: Callable[[T], str], key: Callable[[T], Hashable] = lambda _i: None
) -> list[Group[T]]:
    """Group `items` whose names differ only in indices or leaf names and whose `key`s are equal."""
    order: dict[str, int] = {}
    rows: dict[tuple, list[int]] = {}
    cache: dict[str, Segment] = {}
    for n, item in enumerate(items):
        text = name(item)
        order.setdefault(text.rsplit(".", 1)[-1], n)
        rows.setdefault((_segments(text, cache), key(item)), []).append(n)
    depth = max((len(segs) for segs, _ in rows), default=0)
    changed = True
    while changed:
        changed = False
        for pos in range(depth):
            changed |= _merge_at(rows, pos, leaf_only=False)
        for pos in range(depth):
            changed |= _merge_at(rows, pos, leaf_only=True)
    groups = [(sorted(members), segs) for (segs, _key), members in rows.items()]
    groups.sort(key=lambda g: g[0][0])
    return [Group(_render(segs, order), tuple(items[i] for i in members)) for members, segs in groups]


def collapse_names(names: Sequence[str]) -> list[str]:
    """Just the patterns, for plain name lists (modules_to_save, diff's added/removed names)."""
    return [g.pattern for g in collapse(list(names), lambda n: n)]
