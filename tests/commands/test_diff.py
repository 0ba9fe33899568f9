"""`loraplan diff A B`: plans or configs compared; exit 0 identical, 1 different, 2 unusable input."""

from __future__ import annotations

import json
import re

import pytest

from loraplan import cli

BASE = """\
base_model: meta-llama/Llama-3.2-1B
lora:
  r: 16
  lora_alpha: 32
  target_modules: [q_proj, k_proj, v_proj, o_proj]
training:
  sequence_len: 2048
"""


pytestmark = pytest.mark.usefixtures("plain_env")  # write, run: tests/conftest.py


def plan_json(capsys, path: str, tmp_path) -> str:
    target = tmp_path / (path.rsplit("/", 1)[-1] + ".json")
    assert cli.main(["plan", path, "--format", "json", "-o", str(target)]) == 0
    capsys.readouterr()
    return str(target)


def test_a_config_and_its_plan_are_identical(run, capsys, write, tmp_path):
    a = write("a.yaml", BASE)
    code, out, err = run("diff", plan_json(capsys, a, tmp_path), a)
    assert code == 0 and err == ""
    assert out.endswith("\nThe plans are identical.\n")
    code, out, _ = run("diff", a, a, "--format", "json")
    assert code == 0 and json.loads(out)["identical"] is True


def test_changed_rank_is_collapsed(run, capsys, write):
    a = write("a.yaml", BASE)
    b = write("b.yaml", BASE.replace("r: 16", "r: 32"))
    code, out, _ = run("diff", a, b)
    assert code == 1
    assert re.search(r"Injections  0 added, 0 removed, 64 changed", out)
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("~")]
    assert len(lines) == 2  # q/o (2048->2048) and k/v (2048->512) change by different parameter counts
    assert re.fullmatch(
        r"~ model\.layers\.0-15\.self_attn\.\{q,o\}_proj\s+r 16→32, scaling 2→1, params 65,536→131,072 each\s+×32",
        lines[0],
    )
    assert re.search(r"trainable_params\s+3,407,872\s+→\s+6,815,744\s+\(\+3,407,872\)", out)
    assert re.search(r"adapters\s+13\.00 MiB\s+→\s+26\.00 MiB\s+\(\+13\.00 MiB\)", out)


def test_added_and_removed_targets(run, capsys, write):
    a = write("a.yaml", BASE)
    b = write("b.yaml", BASE.replace("[q_proj, k_proj, v_proj, o_proj]", "[q_proj, v_proj, gate_proj, up_proj]"))
    code, out, _ = run("diff", a, b)
    assert code == 1
    assert "Injections  32 added, 32 removed, 0 changed" in out
    assert re.search(r"\+ model\.layers\.0-15\.mlp\.\{gate,up\}_proj\s+linear\s+r=16\s+α=32\s+2048→8192\s+×32", out)
    assert re.search(r"- model\.layers\.0-15\.self_attn\.k_proj\s+linear .* ×16", out)
    assert re.search(r"- model\.layers\.0-15\.self_attn\.o_proj\s+linear .* ×16", out)
    assert "self_attn.q_proj" not in out  # unchanged modules are not listed


def test_json_lists_every_name(run, capsys, write):
    a = write("a.yaml", BASE)
    b = write("b.yaml", BASE.replace("[q_proj, k_proj, v_proj, o_proj]", "[q_proj, k_proj, v_proj]"))
    code, out, _ = run("diff", a, b, "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["identical"] is False
    (removed,) = data["injections"]["removed"]
    assert removed["modules"] == "model.layers.0-15.self_attn.o_proj"
    assert removed["names"] == [f"model.layers.{n}.self_attn.o_proj" for n in range(16)]
    assert removed["count"] == 16 and removed["params"] == 16 * 16 * (2048 + 2048)
    assert data["injections"]["added"] == [] and data["injections"]["changed"] == []
    assert data["totals"]["trainable_params"]["delta"] == -16 * 16 * 4096
    assert data["memory"]["total"]["delta"] < 0
    assert data["a"]["source"] == a and data["b"]["fingerprint"].startswith("sha256:")


def test_memory_only_change_still_differs(run, capsys, write):
    a = write("a.yaml", BASE)
    b = write("b.yaml", BASE.replace("sequence_len: 2048", "sequence_len: 4096"))
    code, out, _ = run("diff", a, b)
    assert code == 1
    assert "Injections" not in out and "Totals" not in out
    assert re.search(r"activations\s+\S+ \w+\s+→", out) and re.search(r"total\s+.*\(\+", out)
    code, out, _ = run("diff", a, b, "--format", "json")
    data = json.loads(out)
    assert data["a"]["fingerprint"] == data["b"]["fingerprint"]  # same injections
    assert data["memory"]["activations"]["delta"] > 0


def test_different_architectures(run, capsys, write):
    a = write("a.yaml", BASE)
    b = write("b.yaml", BASE.replace("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B"))
    code, out, _ = run("diff", a, b)
    assert code == 1
    assert "Architecture\n  meta-llama/Llama-3.2-1B (LlamaForCausalLM" in out
    assert "→ meta-llama/Llama-3.2-3B (LlamaForCausalLM" in out
    assert "added" in out and "removed" in out  # layers 16-27 exist only in the 3B model


class TestUnusableInput:
    def test_missing_file(self, run, capsys, write, tmp_path):
        code, out, err = run("diff", write("a.yaml", BASE), str(tmp_path / "nope.yaml"))
        assert code == 2 and out == "" and "LP108" in err

    def test_config_with_errors(self, run, capsys, write):
        bad = write("bad.yaml", BASE.replace("k_proj", "k_porj"))
        code, out, err = run("diff", write("a.yaml", BASE), bad)
        assert code == 2 and out == ""
        assert "LP502 error" in err and "did you mean `k_proj`?" in err

    def test_json_that_is_not_a_plan(self, run, capsys, write):
        code, _, err = run("diff", write("a.yaml", BASE), write("x.json", '{"r": 8}'))
        assert code == 2 and "not a loraplan plan" in err

    def test_broken_json(self, run, capsys, write):
        code, _, err = run("diff", write("x.json", "{oops"), write("a.yaml", BASE))
        assert code == 2 and "not valid JSON" in err

    def test_usage(self, run, capsys):
        code, _, err = run("diff", "only-one.yaml")
        assert code == 2 and "usage: loraplan" in err
