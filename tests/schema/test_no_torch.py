"""The schema layer and `loraplan validate` never import torch, transformers or peft.

Runs in a fresh interpreter: this test process itself may have imported torch already.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")

PROBE = """
import json, sys
import loraplan, loraplan.schema
from loraplan.schema.load import load_file
from loraplan.schema.json_schema import generate
after_import = sorted(m for m in {heavy} if m in sys.modules)
load_file({example!r})
generate()
from loraplan.cli import main
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["validate", *{examples!r}])
after_validate = sorted(m for m in {heavy} if m in sys.modules)
print(json.dumps({{"import": after_import, "validate": after_validate, "code": code}}))
"""


def test_schema_and_validate_import_no_torch(examples_dir, repo_root):
    examples = sorted(str(p) for p in examples_dir.glob("*.yaml"))
    script = PROBE.format(heavy=HEAVY, example=examples[0], examples=examples)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"import": [], "validate": [], "code": 0}
