"""Outputs: always valid JSON (no Infinity/NaN), never written over an input, a file or a symlink
without --force, never next to trained weights silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loraplan.compiler.plan import finite

pytestmark = pytest.mark.usefixtures("plain_env")

GOOD = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  target_modules: [q_proj, v_proj]\n"


def strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class TestFiniteNumbers:
    @pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".Inf"])
    @pytest.mark.parametrize(
        ("template", "where"),
        [
            ("lora:\n  lora_alpha: {v}\n  target_modules: [q_proj]\n", "3:15"),
            ("lora:\n  target_modules: [q_proj]\n  alpha_pattern: {{q_proj: {v}}}\n", "4:27"),
            ("lora:\n  target_modules: [q_proj]\n  lora_dropout: {v}\n", "4:17"),
            ("lora:\n  target_modules: [q_proj]\nquantization:\n  load_in_8bit: true\n  llm_int8_threshold: {v}\n",
             "6:23"),
        ],
    )
    def test_non_finite_numbers_are_rejected(self, run, write, value, template, where):
        path = write("c.yaml", "base_model: meta-llama/Llama-3.2-1B\n" + template.format(v=value))
        code, out, _ = run("validate", path)
        assert code == 1
        assert f"c.yaml:{where}: LP204 error" in out

    def test_plan_json_is_json_even_for_such_a_config(self, run, write):
        text = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  lora_alpha: .inf\n  target_modules: [q_proj]\n"
        path = write("c.yaml", text)
        code, out, _ = run("plan", path, "--format", "json")
        assert code == 1
        strict_json(out)

    def test_finite(self):
        got = finite({"a": [1.0, float("inf"), (float("nan"), 2)], "b": "x"})
        assert got == {"a": [1.0, None, [None, 2]], "b": "x"}

    def test_plan_to_json_never_prints_infinity(self, write):
        from dataclasses import replace

        from loraplan.commands.plan import compile_file

        plan, _, _ = compile_file(write("c.yaml", GOOD), "auto", None, False)
        broken = replace(plan, injections=[replace(plan.injections[0], scaling=float("inf")), *plan.injections[1:]])
        data = strict_json(broken.to_json())
        assert data["injections"][0]["scaling"] is None
        assert data["injections"][1]["scaling"] == plan.injections[1].scaling


class TestPlanOutputFile:
    def test_refuses_to_overwrite_the_input_config(self, run, write):
        config = write("c.yaml", GOOD)
        code, _, err = run("plan", config, "-o", config)
        assert code == 2
        assert "is the input" in err
        assert Path(config).read_text() == GOOD
        code, _, err = run("plan", config, "-o", config, "--force")  # not even with --force
        assert code == 2 and Path(config).read_text() == GOOD

    def test_refuses_an_existing_file_without_force(self, run, write, tmp_path):
        config, target = write("c.yaml", GOOD), tmp_path / "plan.txt"
        target.write_text("keep me")
        code, _, err = run("plan", config, "-o", str(target))
        assert code == 2 and "exists; pass --force" in err
        assert target.read_text() == "keep me"
        assert run("plan", config, "-o", str(target), "--force")[0] == 0
        assert "q_proj" in target.read_text()

    def test_never_follows_a_symlink(self, run, write, tmp_path):
        config = write("c.yaml", GOOD)
        victim = tmp_path / "victim.txt"
        victim.write_text("precious")
        link = tmp_path / "plan.txt"
        link.symlink_to(victim)
        code, _, err = run("plan", config, "-o", str(link))
        assert code == 2 and "symbolic link" in err
        assert run("plan", config, "-o", str(link), "--force")[0] == 0
        assert victim.read_text() == "precious"  # the link was replaced, not its target
        assert not link.is_symlink() and "q_proj" in link.read_text()

    def test_symlink_to_the_input_is_refused_even_with_force(self, run, write, tmp_path):
        config = write("c.yaml", GOOD)
        link = tmp_path / "out.txt"
        link.symlink_to(config)
        assert run("plan", config, "-o", str(link), "--force")[0] == 2
        assert Path(config).read_text() == GOOD

    def test_dangling_symlink_is_refused(self, run, write, tmp_path):
        config = write("c.yaml", GOOD)
        link = tmp_path / "out.txt"
        link.symlink_to(tmp_path / "elsewhere.txt")
        assert run("plan", config, "-o", str(link))[0] == 2
        assert not (tmp_path / "elsewhere.txt").exists()

    def test_schema_output_refuses_an_existing_file(self, run, tmp_path):
        target = tmp_path / "s.json"
        target.write_text("keep")
        assert run("schema", "-o", str(target))[0] == 2
        assert target.read_text() == "keep"


class TestExportPeftOutputDir:
    def test_new_dir(self, run, write, tmp_path):
        code, _, err = run("export-peft", write("c.yaml", GOOD), "-o", str(tmp_path / "adapter"))
        assert code == 0, err
        assert strict_json((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 8

    def test_existing_config_needs_force(self, run, write, tmp_path):
        out = tmp_path / "adapter"
        out.mkdir()
        (out / "adapter_config.json").write_text("{}")
        code, _, err = run("export-peft", write("c.yaml", GOOD), "-o", str(out))
        assert code == 2 and "exists; pass --force" in err
        assert (out / "adapter_config.json").read_text() == "{}"
        assert run("export-peft", write("c.yaml", GOOD), "-o", str(out), "--force")[0] == 0

    @pytest.mark.parametrize("weights", ["adapter_model.safetensors", "adapter_model.bin"])
    def test_next_to_trained_weights(self, run, write, tmp_path, weights):
        out = tmp_path / "adapter"
        out.mkdir()
        (out / weights).write_bytes(b"\0")
        code, _, err = run("export-peft", write("c.yaml", GOOD), "-o", str(out))
        assert code == 2 and "holds trained weights" in err
        assert not (out / "adapter_config.json").exists()

    def test_symlinked_config_is_not_followed(self, run, write, tmp_path):
        out = tmp_path / "adapter"
        out.mkdir()
        victim = tmp_path / "victim.json"
        victim.write_text("precious")
        (out / "adapter_config.json").symlink_to(victim)
        assert run("export-peft", write("c.yaml", GOOD), "-o", str(out))[0] == 2
        assert run("export-peft", write("c.yaml", GOOD), "-o", str(out), "--force")[0] == 0
        assert victim.read_text() == "precious"

    def test_output_dir_that_is_a_file(self, run, write, tmp_path):
        target = tmp_path / "file"
        target.write_text("x")
        assert run("export-peft", write("c.yaml", GOOD), "-o", str(target))[0] == 2
        assert target.read_text() == "x"
