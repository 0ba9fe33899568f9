"""`loraplan validate` never says "passed" about targets it did not check, and checks them when it can.

A model outside the catalog with a misspelt target: LP520 in every format, the summary counts the
file as checked partly, --strict fails it. With --arch, `architecture:` (relative to the YAML's
folder), an Axolotl base_model_config or the local HF cache, the targets are checked (LP502).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loraplan.compiler.catalog import CONFIGS_DIR

TINY = json.loads((CONFIGS_DIR / "tiny" / "trl-internal-testing--tiny-Qwen2ForCausalLM-2.5.json").read_text())
# The published tiny Qwen2 config as save_pretrained writes it: not the catalog's bytes, so it is
# a model outside the catalog, built by transformers.
SAVED = {**TINY, "_name_or_path": "acme/private-model"}
OUTSIDE = "base_model: HuggingFaceTB/SmolLM2-135M\nlora:\n  r: 8\n  target_modules: [q_proj, v_porj]\n"
CATALOG = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  target_modules: [q_proj, v_proj]\n"

pytestmark = pytest.mark.usefixtures("plain_env")


@pytest.fixture(autouse=True)
def empty_hf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def model_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(SAVED, indent=2))
    return root


class TestNoSilentPass:
    @pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
    @pytest.mark.parametrize("strict", [False, True])
    def test_every_format_says_targets_were_not_checked(self, run, write, fmt, strict):
        path = write("outside.yaml", OUTSIDE)
        code, out, _ = run("validate", path, "--format", fmt, *(["--strict"] if strict else []))
        assert code == (1 if strict else 0)
        assert "All checks passed" not in out
        severity = "error" if strict else "warning"
        if fmt == "text":
            assert f"outside.yaml:1:13: LP520 {severity}: targets not checked: base_model " in out
            assert "help: `loraplan validate --online`" in out and "--arch" in out
            assert "(1 file checked: 0 fully, 1 partly: targets not checked)." in out
        elif fmt == "json":
            data = json.loads(out)
            (d,) = data["diagnostics"]
            assert (d["code"], d["severity"], d["line"], d["column"]) == ("LP520", severity, 1, 13)
            assert data["summary"]["files_checked_partly"] == 1 and data["summary"]["files_checked_fully"] == 0
        elif fmt == "github":
            assert out.startswith(f"::{severity} file={path},line=1,col=13,endLine=1,endColumn=39,title=LP520::")
            assert "0 fully, 1 partly" in out
        else:
            run_ = json.loads(out)["runs"][0]
            (result,) = run_["results"]
            assert result["ruleId"] == "LP520" and result["level"] == severity
            assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
            assert run_["properties"]["filesCheckedPartly"] == [path]

    def test_summary_counts_fully_and_partly_checked(self, run, write):
        code, out, _ = run("validate", write("a.yaml", CATALOG), write("b.yaml", OUTSIDE), "--format", "json")
        summary = json.loads(out)["summary"]
        assert code == 0 and (summary["files_checked_fully"], summary["files_checked_partly"]) == (1, 1)

    def test_arch_flag_hub_id_out_of_reach_is_located_at_base_model(self, run, write):
        code, out, _ = run("validate", write("c.yaml", OUTSIDE), "--arch", "acme/other-model")
        assert code == 0 and "c.yaml:1:1: LP520 warning: targets not checked: --arch 'acme/other-model'" in out

    def test_catalog_model_is_checked_fully(self, run, write):
        code, out, _ = run("validate", write("a.yaml", CATALOG))
        assert code == 0 and out.strip() == "All checks passed (1 file checked)."


class TestTargetsChecked:
    def test_arch_flag_config_json_and_folder(self, run, write, tmp_path):
        folder = model_folder(tmp_path / "smol")
        path = write("outside.yaml", OUTSIDE)
        for arch in (str(folder / "config.json"), str(folder)):
            code, out, _ = run("validate", path, "--arch", arch)
            assert code == 1 and "outside.yaml:4:28: LP502 error: target `v_porj` matches no module" in out
            assert "did you mean `v_proj`?" in out and "LP520" not in out

    def test_architecture_key_is_relative_to_the_yaml_folder(self, run, tmp_path, monkeypatch):
        model_folder(tmp_path / "models" / "smol")
        configs = tmp_path / "configs" / "team"
        configs.mkdir(parents=True)
        (configs / "c.yaml").write_text("architecture: ../../models/smol/config.json\n" + OUTSIDE)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)  # the cwd is not the YAML's folder
        code, out, _ = run("validate", str(configs / "c.yaml"))
        assert code == 1 and "LP502 error: target `v_porj`" in out
        code, out, _ = run("plan", str(configs / "c.yaml"))
        assert f"resolved from file: {tmp_path / 'models' / 'smol' / 'config.json'}" in " ".join(out.split())

    def test_axolotl_base_model_config_relative(self, run, tmp_path, monkeypatch):
        model_folder(tmp_path / "smol")
        (tmp_path / "ax").mkdir()
        (tmp_path / "ax" / "c.yaml").write_text(
            "base_model: acme/private-model\nbase_model_config: ../smol\nadapter: lora\nlora_r: 8\n"
            "lora_target_modules: [q_proj, v_porj]\n")
        monkeypatch.chdir(tmp_path / "ax" / "..")
        code, out, _ = run("validate", str(tmp_path / "ax" / "c.yaml"))
        assert code == 1 and "LP502" in out

    def test_base_model_folder_relative_to_the_yaml(self, run, tmp_path, monkeypatch):
        model_folder(tmp_path / "models" / "smol")
        (tmp_path / "cfg").mkdir()
        (tmp_path / "cfg" / "c.yaml").write_text(OUTSIDE.replace("HuggingFaceTB/SmolLM2-135M", "../models/smol"))
        monkeypatch.chdir(tmp_path / "models")  # ../models/smol from here does not exist
        code, out, _ = run("validate", str(tmp_path / "cfg" / "c.yaml"))
        assert code == 1 and "LP502 error: target `v_porj`" in out

    def test_online_in_a_fresh_process(self, tmp_path, repo_root):
        import os

        from hub_standin import HubStandIn, Repo  # tests/hub_standin.py

        tiny = (CONFIGS_DIR / "tiny" / "trl-internal-testing--tiny-Qwen2ForCausalLM-2.5.json").read_bytes()
        hub = HubStandIn(repos={"HuggingFaceTB/SmolLM2-135M": Repo({"config.json": tiny})})
        url = hub.start()
        try:
            (tmp_path / "c.yaml").write_text(OUTSIDE)
            env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
            env.update(HF_ENDPOINT=url, HF_HUB_CACHE=str(tmp_path / "cache"), NO_COLOR="1")
            proc = subprocess.run([sys.executable, "-m", "loraplan", "validate", "--online", str(tmp_path / "c.yaml")],
                                  capture_output=True, text=True, cwd=repo_root, env=env, timeout=120)
        finally:
            hub.stop()
        assert proc.returncode == 1 and "LP502 error: target `v_porj`" in proc.stdout, proc.stdout + proc.stderr
        assert hub.requested_files() == {"config.json"}

    def test_missing_explicit_path_is_an_error(self, run, write):
        code, out, _ = run("validate", write("c.yaml", "architecture: ./nowhere/config.json\n" + OUTSIDE))
        assert code == 1 and "c.yaml:1:15: LP501 error: architecture './nowhere/config.json' cannot be resolved" in out

    def test_model_in_the_hf_cache_is_checked(self, run, write, tmp_path, monkeypatch):
        cache = tmp_path / "hf"
        snap = cache / "models--HuggingFaceTB--SmolLM2-135M" / "snapshots" / ("a" * 40)
        model_folder(snap)
        (snap.parents[1] / "refs").mkdir()
        (snap.parents[1] / "refs" / "main").write_text("a" * 40)
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        code, out, _ = run("validate", write("c.yaml", OUTSIDE))
        assert code == 1 and "LP502 error: target `v_porj`" in out
        code, out, _ = run("plan", write("c.yaml", OUTSIDE), "--format", "json")
        source = json.loads(out)["architecture_source"]
        assert source["kind"] == "hf-cache" and source["commit"] == "a" * 40


PROBE = """
import json, sys
sys.modules["torch"] = None  # torch is not installed
from loraplan.cli import main
import io, contextlib
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["validate", "--format", "json", *sys.argv[1:]])
heavy = sorted(m for m in ("transformers", "huggingface_hub", "peft") if m in sys.modules)
print(json.dumps({"code": code, "report": json.loads(out.getvalue()), "heavy": heavy}))
"""


def test_without_torch_a_config_json_is_named_not_passed(tmp_path, repo_root):
    model_folder(tmp_path / "smol")
    (tmp_path / "c.yaml").write_text("architecture: smol\n" + OUTSIDE)
    (tmp_path / "d.yaml").write_text(OUTSIDE)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "c.yaml"), str(tmp_path / "d.yaml")],
                          capture_output=True, text=True, cwd=repo_root, timeout=120,
                          env={**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "none")})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["code"] == 0
    first, second = result["report"]["diagnostics"]
    assert first["code"] == "LP520" and "needs torch and transformers" in first["message"]
    assert "pip install 'loraplan[hf]'" in first["hint"] and first["line"] == 1
    assert second["code"] == "LP520" and second["file"].endswith("d.yaml")
