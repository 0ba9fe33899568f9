"""`loraplan plan`: formats, exit codes, Axolotl input, --arch, -o, torch absent, example outputs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from loraplan.compiler.plan import Plan

LLAMA_1B = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  lora_alpha: 16\n  target_modules: [q_proj, v_proj]\n"
TYPO = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  target_modules: [q_proj, v_porj]\n"
UNKNOWN = "base_model: nobody/no-such-model\nlora:\n  r: 8\n"
AXOLOTL = """\
base_model: NousResearch/Meta-Llama-3-8B
adapter: lora
load_in_8bit: false
sequence_len: 2048
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules:
  - q_proj
  - v_proj
micro_batch_size: 2
"""


pytestmark = pytest.mark.usefixtures("plain_env")  # write, run: tests/conftest.py


class TestFormats:
    def test_table(self, run, capsys, write):
        path = write("c.yaml", LLAMA_1B)
        code, out, err = run("plan", path)
        assert code == 0 and err == ""
        assert out.startswith(f"Plan  {path}\n")
        assert "model.layers.0-15.self_attn.{q,v}_proj" not in out  # q 2048->2048, v 2048->512: two rows
        assert "model.layers.0-15.self_attn.q_proj  linear  r=8  α=16  2048→2048  ×16" in out
        assert "model.layers.0-15.self_attn.v_proj  linear  r=8  α=16  2048→512" in out
        assert "All checks passed (1 file checked)." in out

    def test_json_is_the_full_plan(self, run, capsys, write):
        code, out, _ = run("plan", write("c.yaml", LLAMA_1B), "--format", "json")
        assert code == 0
        data = json.loads(out)
        for key in (
            "injections",
            "parameters",
            "modules_to_save",
            "coverage",
            "totals",
            "memory",
            "diagnostics",
            "peft_config",
            "fingerprint",
            "architecture_fingerprint",
        ):
            assert key in data
        assert len(data["injections"]) == 32 and data["parameters"] == []
        q = 8 * (2048 + 2048)
        v = 8 * (2048 + 512)
        assert data["totals"]["trainable_params"] == 16 * (q + v)
        plan = Plan.from_json(out)
        assert plan.fingerprint == data["fingerprint"]
        assert plan.injections[0].module == "model.layers.0.self_attn.q_proj"

    def test_markdown(self, run, capsys, write):
        path = write("c.yaml", LLAMA_1B)
        code, out, _ = run("plan", path, "--format", "markdown")
        assert code == 0
        assert out.startswith(f"# Plan: `{path}`\n")
        assert "| `model.layers.0-15.self_attn.q_proj` | linear | 8 | 16 | 2048→2048 | 16 | 524,288 |" in out

    def test_output_file(self, run, capsys, write, tmp_path):
        target = tmp_path / "plan.json"
        code, out, err = run("plan", write("c.yaml", LLAMA_1B), "--format", "json", "-o", str(target))
        assert code == 0 and out == "" and err == ""
        assert json.loads(target.read_text(encoding="utf-8"))["totals"]["trainable_params"] == 16 * 8 * (4096 + 2560)

    def test_output_file_with_errors_reports_them_on_stderr(self, run, capsys, write, tmp_path):
        target = tmp_path / "plan.txt"
        code, out, err = run("plan", write("t.yaml", TYPO), "-o", str(target))
        assert code == 1 and out == ""
        assert "LP502 error" in err and "LP502 error" in target.read_text(encoding="utf-8")

    def test_unwritable_output_exits_2(self, run, capsys, write, tmp_path):
        code, _, err = run("plan", write("c.yaml", LLAMA_1B), "-o", str(tmp_path / "no" / "dir" / "p.txt"))
        assert code == 2 and "cannot write" in err


class TestExitCodes:
    def test_unmatched_target_exits_1_with_located_error(self, run, capsys, write):
        path = write("t.yaml", TYPO)
        code, out, _ = run("plan", path)
        assert code == 1
        assert f"{path}:4:28: LP502 error" in out and "did you mean `v_proj`?" in out
        assert "model.layers.0-15.self_attn.q_proj" in out  # the plan is still shown

    def test_errors_are_in_the_json_plan(self, run, capsys, write):
        code, out, _ = run("plan", write("t.yaml", TYPO), "--format", "json")
        assert code == 1
        assert [d["code"] for d in json.loads(out)["diagnostics"]] == ["LP502"]

    def test_unresolvable_model_exits_1(self, run, capsys, write):
        path = write("u.yaml", UNKNOWN)
        code, out, _ = run("plan", path)
        assert code == 1 and f"{path}:1:13: LP501 error" in out
        code, out, _ = run("plan", path, "--format", "json")
        assert code == 1 and json.loads(out)["diagnostics"][0]["code"] == "LP501"
        code, out, _ = run("plan", path, "--format", "markdown")
        assert code == 1 and "No plan: the config has errors." in out and "LP501" in out

    def test_schema_errors_exit_1(self, run, capsys, write):
        code, out, _ = run("plan", write("b.yaml", "base_model: m\nlora:\n  r: 0\n"))
        assert code == 1 and "LP204 error" in out

    def test_warnings_exit_0_and_1_with_strict(self, run, capsys, write):
        # On a hybrid model each list name reaches only its own mixer's layers: LP503 warnings.
        hybrid = write("h.yaml", "base_model: Qwen/Qwen3.5-9B\nlora:\n  target_modules: [q_proj, in_proj_qkv]\n")
        code, out, _ = run("plan", hybrid)
        assert code == 0 and "LP503 warning" in out
        code, out, _ = run("plan", hybrid, "--strict")
        assert code == 1 and "LP503 error" in out and "LP503 warning" not in out
        code, out, _ = run("plan", hybrid, "--strict", "--format", "json")
        assert code == 1 and {d["severity"] for d in json.loads(out)["diagnostics"]} == {"error"}

    @pytest.mark.parametrize("argv", [["plan"], ["plan", "c.yaml", "--format", "xml"], ["plan", "a", "b"]])
    def test_usage_errors_exit_2(self, run, capsys, argv):
        code, _, err = run(*argv)
        assert code == 2 and "usage: loraplan" in err


class TestInputs:
    def test_axolotl_config(self, run, capsys, write):
        path = write("axolotl.yml", AXOLOTL)
        code, out, _ = run("plan", path, "--format", "json")
        assert code == 0
        data = json.loads(out)
        assert (data["architecture"], data["model_class"]) == ("meta-llama/Meta-Llama-3-8B", "LlamaForCausalLM")
        assert {i["module"].rsplit(".", 1)[1] for i in data["injections"]} == {"q_proj", "v_proj"}
        assert len(data["injections"]) == 64 and data["injections"][0]["r"] == 32
        assert data["totals"]["trainable_params"] == 32 * 32 * ((4096 + 4096) + (4096 + 1024))

    def test_axolotl_diagnostics_point_at_the_original_keys(self, run, capsys, write):
        path = write("axolotl.yml", AXOLOTL.replace("  - v_proj", "  - v_porj"))
        code, out, _ = run("plan", path, "--dialect", "axolotl")
        # Axolotl (PEFT) trains q_proj alone: a warning that says so; --strict fails CI on it
        assert code == 0 and f"{path}:10:5: LP502 warning: Axolotl runs this, but" in out
        code, out, _ = run("plan", path, "--dialect", "axolotl", "--strict")
        assert code == 1 and f"{path}:10:5: LP502 error" in out

    def test_arch_override(self, run, capsys, write):
        path = write("c.yaml", LLAMA_1B.replace("meta-llama/Llama-3.2-1B", "my-org/private-finetune"))
        code, _, _ = run("plan", path)
        assert code == 1
        code, out, _ = run("plan", path, "--arch", "meta-llama/Llama-3.2-1B", "--format", "json")
        assert code == 0 and len(json.loads(out)["injections"]) == 32


BLOCKER = """
import importlib.abc, sys
BLOCKED = {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"the blocker let {name} through")
from loraplan.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("LOADED", loaded, file=sys.stderr)
sys.exit(code)
"""


def run_blocked(repo_root, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, *argv], capture_output=True, text=True, cwd=repo_root, env=env, timeout=120
    )


def test_plan_works_with_torch_absent(repo_root, tmp_path):
    axolotl = tmp_path / "axolotl.yml"
    axolotl.write_text(AXOLOTL, encoding="utf-8")
    for config in ("examples/mixtral-8x7b-qlora.yaml", str(axolotl)):
        proc = run_blocked(repo_root, "plan", config, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert "LOADED []" in proc.stderr and "Traceback" not in proc.stderr
        assert json.loads(proc.stdout)["totals"]["trainable_params"] > 0
    proc = run_blocked(repo_root, "plan", "examples/llama3-8b-qlora.yaml")
    assert proc.returncode == 0 and "model.layers.0-31.self_attn.{q,o}_proj" in proc.stdout


def test_local_config_json_without_torch_is_a_finding(repo_root, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 96}), encoding="utf-8")
    proc = run_blocked(repo_root, "plan", "examples/llama3-8b-qlora.yaml", "--arch", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "needs torch and transformers" in proc.stdout and "Traceback" not in proc.stderr


def test_ascii_terminal_gets_ascii_glyphs(repo_root, write):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run(
        [sys.executable, "-m", "loraplan", "plan", write("c.yaml", LLAMA_1B)],
        capture_output=True,
        cwd=repo_root,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"r=8  alpha=16  2048->2048  x16" in proc.stdout


def test_example_plans_are_up_to_date(repo_root):
    spec = importlib.util.spec_from_file_location("render_plans", repo_root / "examples" / "render_plans.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render_all()
    assert {p.name for p in rendered} == {f"{n}{s}" for n in module.EXAMPLES for s in (".txt", ".md")}
    assert module.stale(rendered) == [], "run: python examples/render_plans.py"
    hybrid = rendered[module.PLANS_DIR / "qwen3.5-9b-hybrid-lora.txt"]
    assert "model.language_model.layers.3,7,...,31.self_attn.q_proj" in hybrid
    assert "linear_attn.in_proj_qkv" in hybrid
