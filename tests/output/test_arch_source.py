"""Every plan format names where the architecture came from; an alias says what it is an alias of and why."""

from __future__ import annotations

import json

import pytest

from loraplan.output.arch_source import source_text

pytestmark = pytest.mark.usefixtures("plain_env")

CASES = [
    ("microsoft/Phi-3.5-mini-instruct", "microsoft/Phi-3-mini-4k-instruct", "qkv_proj", "sources-A.tsv"),
    ("google/gemma-4-26B-A4B", "google/gemma-4-26B-A4B-it", "q_proj", "pre-trained"),
    ("nvidia/Qwen3-30B-A3B-NVFP4", "Qwen/Qwen3-30B-A3B", "q_proj", "hf_quant_config.json"),
]


@pytest.mark.parametrize(("alias", "entry", "target", "why"), CASES)
def test_alias_is_named_with_its_evidence_in_every_format(run, write, alias, entry, target, why):
    path = write("c.yaml", f"base_model: {alias}\nlora:\n  r: 8\n  target_modules: [{target}]\n")
    _, table, _ = run("plan", path)
    _, markdown, _ = run("plan", path, "--format", "markdown")
    _, as_json, _ = run("plan", path, "--format", "json")
    flat = " ".join(table.split())
    assert f"resolved from bundled catalog: {entry}; {alias} is planned as its alias: " in flat and why in flat
    assert f"| resolved from | bundled catalog: {entry}; {alias} is planned as its alias: " in markdown
    src = json.loads(as_json)["architecture_source"]
    assert (src["kind"], src["entry"], src["alias"], src["alias_of"]) == ("catalog", entry, alias, entry)
    assert why in src["alias_evidence"]
    nvfp4 = "NVFP4" in alias
    assert ("weights pre-quantized: nvfp4" in flat) is nvfp4
    assert ("| weights | pre-quantized: nvfp4" in markdown) is nvfp4


def test_plain_catalog_name_has_no_alias_words(run, write):
    _, out, _ = run("plan", write("c.yaml", "base_model: Qwen/Qwen3-30B-A3B\nlora:\n  target_modules: [q_proj]\n"))
    assert "resolved from     bundled catalog: Qwen/Qwen3-30B-A3B\n" in out and "alias" not in out


def test_each_kind_of_source_reads_as_one_line():
    commit = "0123456789abcdef" * 2 + "01234567"
    assert source_text({"kind": "hub", "endpoint": "http://h", "name": "a/b", "revision": "v1", "commit": commit,
                        "path": "/c/config.json"}) == (
        "hub: http://h/a/b, revision v1, commit 0123456789ab (config.json only, cached at /c/config.json)")
    assert source_text({"kind": "hf-cache", "path": "/c", "revision": "main", "commit": commit,
                        "same_as_catalog": "x/y"}) == (
        "local Hugging Face cache: /c (revision main, commit 0123456789ab) (same content as catalog entry x/y)")
    assert source_text({"kind": "file", "path": "/m/config.json"}) == "file: /m/config.json"
    assert source_text({"kind": "module", "class": "LlamaForCausalLM"}) == "live module: LlamaForCausalLM"
