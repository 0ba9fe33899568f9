"""examples/apply_plan.py runs end to end on a CPU: plan printed, loss falling, adapter reloads."""

from __future__ import annotations

import importlib.util
import json
import re


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_apply_plan_example(examples_dir, tmp_path, capsys):
    example = _load(examples_dir / "apply_plan.py")
    assert example.main(["--steps", "4", "--out", str(tmp_path / "adapter")]) == 0
    out = capsys.readouterr().out
    assert "down_proj" in out and "16,384" in out  # the plan, with its trainable count
    assert "applied and verified" in out and "same outputs" in out
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["target_modules"] == "all-linear" and saved["r"] == 8


def test_qlora_example_declines_without_a_gpu_unless_asked(examples_dir, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    example = _load(examples_dir / "qlora_gpu.py")
    assert example.main([]) == 2
    assert "--cpu" in capsys.readouterr().err
