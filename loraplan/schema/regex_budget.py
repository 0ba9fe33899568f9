"""User regexes (targets, excludes, rank/alpha keys) compiled and matched under a time budget.

PEFT matches these with Python's `re` (`re.fullmatch`, `re.match`), so loraplan must too: another
engine (RE2, the `regex` package) accepts other patterns and, in corner cases, matches others.
But `re` backtracks: `(.+)+x` against a 40-character module name runs for hours, and 500 nested
groups overflow the parser's recursion. So, with the semantics left exactly `re`'s:

- `compile_user` turns every way `re.compile` can fail (re.error, RecursionError, OverflowError)
  into `re.error`, so the schema reports it as an invalid regex at its place; groups nested more
  than MAX_GROUP_DEPTH deep are refused before `re` sees them, whatever the recursion limit;
- `match` runs `re` under a budget of CPU-bound seconds per pattern (all its calls together). In
  the main thread of a POSIX process a periodic SIGALRM checks the running call (`re`'s engine
  polls for signals while it backtracks, so the check interrupts it); a pattern over its budget
  raises RegexBudgetError, which the compiler reports as LP550 at the pattern. Elsewhere (another
  thread, no SIGALRM, or the caller's own interval timer in use) no call can be interrupted, so
  patterns whose backtracking can explode (an unbounded repeat around another unbounded repeat
  or an alternation) are refused up front with the same error, and the budget still bounds the
  sum of the calls that return.

Only the standard library is used: the schema layer stays light.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MAX_GROUP_DEPTH = 100  # real target patterns nest a few levels; re's own limit depends on the recursion limit
BUDGET_SECONDS = 2.0  # per pattern; a real pattern over the largest catalog architecture needs ~0.1 s
_TICK = 0.05

try:  # the parser's internals moved in 3.11; only used for the static check off the main thread
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]


class RegexBudgetError(Exception):
    """A user pattern that took longer than its budget (or could not be bounded)."""

    def __init__(self, pattern: str, reason: str):
        super().__init__(f"pattern {pattern!r}: {reason}")
        self.pattern = pattern
        self.reason = reason


class _State(threading.local):
    """Per thread: a worker thread's compile never shares accounts with the main thread's guard."""

    def __init__(self) -> None:
        self.current: str | None = None  # the user pattern being matched now
        self.started = 0.0
        self.spent: dict[str, float] = {}
        self.budget = BUDGET_SECONDS
        self.guarded = False  # a SIGALRM guard is installed (main thread)
        self.active = False  # inside `budget()`: calls are charged; outside, `match` is plain `re`


_state = _State()
_cache: dict[str, re.Pattern[str]] = {}


def compile_user(pattern: str) -> re.Pattern[str]:
    """re.compile, with every failure (deep nesting, huge repeat counts) raised as re.error."""
    cached = _cache.get(pattern)
    if cached is not None:
        return cached
    if _group_depth(pattern) > MAX_GROUP_DEPTH:
        raise re.error(f"pattern nested too deeply to compile (more than {MAX_GROUP_DEPTH} levels of groups)")
    try:
        compiled = re.compile(pattern)
    except re.error:
        raise
    except RecursionError:
        raise re.error("pattern nested too deeply to compile") from None
    except (OverflowError, ValueError, MemoryError) as exc:
        raise re.error(f"pattern cannot be compiled: {exc}") from None
    if len(_cache) > 4096:
        _cache.clear()
    _cache[pattern] = compiled
    return compiled


def _group_depth(pattern: str) -> int:
    """How deep `(` groups nest (escapes and character classes skipped): re's parser recurses once
    per level, so the outcome would otherwise hang on the interpreter's recursion limit, which
    other libraries raise (and past which the C stack overflows)."""
    depth = deepest = 0
    i, n, in_class = 0, len(pattern), False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]" or pattern[i + 1 : i + 3] == "^]":  # `[]...]`, `[^]...]`
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _explosive(pattern: str) -> bool:
    """Whether an unbounded repeat contains another unbounded repeat or an alternation."""
    try:
        parsed = _sre_parse.parse(pattern)
    except Exception:
        return False
    c = _sre_constants

    def walk(items: object, inside: bool) -> bool:
        for op, arg in items:  # type: ignore[attr-defined]
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                unbounded = arg[1] == c.MAXREPEAT
                if (unbounded and inside) or walk(arg[2], inside or unbounded):
                    return True
            elif op is c.BRANCH:
                if inside or any(walk(b, inside) for b in arg[1]):
                    return True
            elif op is c.SUBPATTERN and walk(arg[-1], inside):
                return True
        return False

    return walk(parsed, False)


def _on_alarm(signum: int, frame: object) -> None:
    s = _state
    if s.current is None:
        return
    elapsed = s.spent.get(s.current, 0.0) + time.perf_counter() - s.started
    if elapsed > s.budget:
        pattern, s.current = s.current, None
        raise RegexBudgetError(pattern, f"matching took over {s.budget:g} s (catastrophic backtracking)")


@contextmanager
def budget(seconds: float | None = None) -> Iterator[None]:
    """Bound every `match` inside the block; nested use keeps the outer guard."""
    s = _state
    if s.active:
        yield
        return
    can_signal = (
        hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    s.spent, s.budget, s.current = {}, BUDGET_SECONDS if seconds is None else seconds, None
    if not can_signal:
        s.active = True
        try:
            yield
        finally:
            s.active = False
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    s.guarded = s.active = True
    signal.setitimer(signal.ITIMER_REAL, _TICK, _TICK)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
        s.guarded = s.active = False
        s.current = None


def match(pattern: str, text: str, *, full: bool = False, origin: str | None = None) -> re.Match[str] | None:
    """`re.fullmatch` / `re.match` of `pattern` on `text`, charged to `origin` (the user's own pattern).

    Raises re.error for an invalid pattern and RegexBudgetError past the budget.
    """
    compiled = compile_user(pattern)
    s = _state
    if not s.active:
        return compiled.fullmatch(text) if full else compiled.match(text)
    owner = origin if origin is not None else pattern
    if not s.guarded and owner not in s.spent and _explosive(pattern):
        raise RegexBudgetError(owner, "nested unbounded repeats can backtrack for hours, and this call "
                                      "cannot be interrupted (not in the main thread)")
    outer = s.current
    s.current, s.started = owner, time.perf_counter()
    try:
        result = compiled.fullmatch(text) if full else compiled.match(text)
    finally:
        spent = s.spent.get(owner, 0.0) + time.perf_counter() - s.started
        s.spent[owner] = spent
        s.current = outer
        if outer is not None:
            s.started = time.perf_counter()
    if spent > s.budget:
        raise RegexBudgetError(owner, f"matching took over {s.budget:g} s (catastrophic backtracking)")
    return result
