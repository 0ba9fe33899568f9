"""Top-level keys Axolotl does not know: misspelt adapter keys are errors, the rest pass.

Axolotl drops unknown keys silently, so `lora_alpah: 32` trains with alpha unset. A key close to
an adapter or planned key (edit distance 1-3, by length) is an error with did-you-mean; an unknown
`lora_*`/`peft_*`/... key with no close match is a warning; a key very close to some other
Axolotl key is an info with did-you-mean (Axolotl ignores it too); anything else passes, because
plugins add keys of their own.
"""

from __future__ import annotations

from loraplan.schema.axolotl.keys import (
    ADAPTER_KEYS,
    ADAPTER_PREFIXES,
    AXOLOTL_KEYS,
    FOREIGN_NAMES,
    PLANNED_KEYS,
    REMOVED_KEYS,
)
from loraplan.schema.axolotl.tree import Tree

_READ = ADAPTER_KEYS | PLANNED_KEYS
_KNOWN = sorted(AXOLOTL_KEYS)


def distance(a: str, b: str) -> int:
    """Optimal string alignment distance (edits, with adjacent transpositions counting one)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _allowed(name: str) -> int:
    return 1 if len(name) < 10 else 2 if len(name) < 18 else 3


def closest(key: str) -> str | None:
    """The known key `key` most likely misspells, or None."""
    low = key.lower()
    best, best_d = None, 99
    for known in _KNOWN:
        if abs(len(known) - len(low)) > 3:
            continue
        d = distance(low, known)
        if d <= _allowed(known) and (d < best_d or (d == best_d and known in _READ and best not in _READ)):
            best, best_d = known, d
    return best


def check_unknown_keys(t: Tree) -> None:
    for key in t.src.data:
        if not isinstance(key, str) or key in AXOLOTL_KEYS or key in REMOVED_KEYS:
            continue  # removed keys: refusals.py says what Axolotl does
        if key in FOREIGN_NAMES:
            target = FOREIGN_NAMES[key]
            where = f"inside `{target}:`" if target == "bnb_config_kwargs" else f"as `{target}`"
            t.report("LP401", "error", f"'{key}' is PEFT's name: Axolotl ignores it here", (key,),
                     hint=f"write it {where}")
            continue
        guess = closest(key)
        if guess in _READ:
            t.report("LP401", "error", f"unknown key '{key}': Axolotl ignores it, so {guess} is not set",
                     (key,), hint=f"did you mean '{guess}'?")
        elif key.lower().startswith(ADAPTER_PREFIXES):
            hint = f"did you mean '{guess}'?" if guess else None
            t.report("LP401", "warning", f"unknown adapter key '{key}': Axolotl ignores it", (key,), hint=hint)
        elif guess is not None and len(key) >= 8:  # short names are too often near one by chance
            t.report("LP405", "info", f"unknown Axolotl key '{key}': Axolotl ignores it, so {guess} is not set",
                     (key,), hint=f"did you mean '{guess}'?")
