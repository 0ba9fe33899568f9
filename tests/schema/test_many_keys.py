"""20,000 unknown keys: the findings cost linear time (the old code took minutes: quadratic)."""

from __future__ import annotations

import time

import pytest

from loraplan.schema import yaml_source

N = 20_000


@pytest.fixture(scope="module")
def many_keys(tmp_path_factory):
    path = tmp_path_factory.mktemp("many") / "many.yaml"
    lines = ["base_model: m", "lora:", "  target_modules: [q]"] + [f"unknown_key_{i}: 1" for i in range(N)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_source_lines_are_split_once_per_file(run, many_keys, monkeypatch, plain_env):
    calls = []
    real = yaml_source.split_lines

    def counting(text):
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(yaml_source, "split_lines", counting)
    start = time.perf_counter()
    code, out, _ = run("validate", many_keys)
    elapsed = time.perf_counter() - start
    assert code == 1
    assert out.count("LP201 error: unknown key") == N
    assert len(calls) <= 3  # not one split of the whole file per finding
    assert elapsed < 60  # ~3 s here; the quadratic code took over two minutes


def test_union_pruning_is_linear():
    from loraplan.schema.pydantic_errors import _useful

    items = [(("k", i), {"type": "extra_forbidden"}) for i in range(200_000)]
    items += [(("lora", "target_modules"), {"type": "string_type"}), (("lora", "target_modules", 0), {"type": "x"})]
    start = time.perf_counter()
    kept = _useful(items)
    assert time.perf_counter() - start < 5  # 4e10 comparisons when quadratic
    assert len(kept) == len(items) - 1  # the union member's type error under a deeper one is dropped
