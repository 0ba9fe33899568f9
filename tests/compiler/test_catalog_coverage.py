"""Coverage of the Axolotl corpus: how many configs resolve `base_model` offline, with no torch.

The corpus is the 178 LoRA/QLoRA example configs of Axolotl (a copy with its licence is in
tests/schema/data/axolotl-examples). Each config's top-level `base_model` must be found in the
bundled catalog (hub id or alias); the ones that are not are printed, with their counts.

The compiler issue's goal is 80 %. The catalog holds only configs whose every architecture field
has a recorded source (plus Axolotl's linearized Llama-4 variants, built from published configs
the way Axolotl patches the model); the floor below guards what resolves now. Seven of the
missing ones need remote code (Qwen-7B, MiMo, dbrx-converted, replit, xgen) and can never resolve.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "schema" / "data" / "axolotl-examples"
GOAL = 0.80  # the target
FLOOR = 143 / 178  # what the catalog resolves now (80.3 %); a regression below it fails

SCRIPT = f"""
import sys, json
from pathlib import Path
import yaml
from loraplan.compiler.catalog import lookup, load_catalog_architecture
found, missing = 0, []
for path in sorted(Path({str(CORPUS)!r}).rglob("*.y*ml")):
    base = (yaml.safe_load(path.read_text()) or {{}}).get("base_model")
    entry = lookup(base) if isinstance(base, str) else None
    if entry is None:
        missing.append(base)
    else:
        load_catalog_architecture(entry)
        found += 1
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
print(json.dumps({{"found": found, "missing": missing, "heavy": heavy}}))
"""


def corpus_files() -> list[Path]:
    return sorted(CORPUS.rglob("*.y*ml"))


def test_corpus_present():
    files = corpus_files()
    assert len(files) == 178
    assert all(isinstance(yaml.safe_load(f.read_text()).get("base_model"), str) for f in files)


def test_axolotl_base_models_resolve_offline():
    import json

    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["heavy"] == [], "catalog resolution imported torch/transformers"
    total = result["found"] + len(result["missing"])
    share = result["found"] / total
    print(f"\naxolotl corpus: {result['found']}/{total} base_model resolve offline ({share:.1%})")
    for name, count in Counter(result["missing"]).most_common():
        print(f"  unresolved x{count}: {name}")
    assert total == 178
    assert share >= GOAL, f"{share:.1%} of the Axolotl corpus resolves offline, below the {GOAL:.0%} goal"
    assert share >= FLOOR, f"only {share:.1%} of the Axolotl corpus resolves offline (was {FLOOR:.1%}, goal {GOAL:.0%})"
