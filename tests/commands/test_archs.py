"""`loraplan archs`: table and JSON listing of the catalog, with a filter."""

from __future__ import annotations

import argparse
import json

import pytest

from loraplan.commands import archs
from loraplan.compiler.catalog import list_catalog


def run(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    archs.add_parser(parser.add_subparsers())
    args = parser.parse_args(["archs", *argv])
    code = archs.run(args)
    return code, capsys.readouterr().out


def test_table_lists_every_entry(capsys):
    code, out = run(capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["NAME", "MODEL", "TYPE", "CLASS", "LAYERS", "PARAMS", "ALIASES"]
    assert len([ln for ln in lines[1:] if ln and not ln.startswith(" ")]) == len(list_catalog()) + 1
    row = next(ln for ln in lines if ln.startswith("meta-llama/Llama-3.1-405B "))
    assert row.split()[1:] == ["llama", "LlamaForCausalLM", "126", "406B", "1"]


def test_filter_by_alias_type_or_class(capsys):
    code, out = run(capsys, "nousresearch")
    names = [ln.split()[0] for ln in out.splitlines()[1:] if ln.strip() and "/" in ln.split()[0]]
    assert code == 0 and "meta-llama/Meta-Llama-3-8B" in names
    assert all(lookup_has(n, "nousresearch") for n in names)
    code, out = run(capsys, "T5ForConditional")
    assert {ln.split()[0] for ln in out.splitlines()[1:] if "/" in ln} == {"google/flan-t5-base", "google-t5/t5-small"}


def lookup_has(name: str, needle: str) -> bool:
    from loraplan.compiler.catalog import lookup

    e = lookup(name)
    return any(needle in x.lower() for x in (e.name, *e.aliases, e.model_type, e.model_class, e.config_file))


def test_json_format(capsys):
    code, out = run(capsys, "gpt2", "--format", "json")
    rows = json.loads(out)
    assert code == 0
    gpt2 = next(r for r in rows if r["name"] == "openai-community/gpt2")
    assert gpt2["model_class"] == "GPT2LMHeadModel" and gpt2["num_layers"] == 12
    assert gpt2["total_params"] == 124_439_808 and gpt2["aliases"] == []
    assert "variant" not in gpt2


def test_json_names_a_variant_and_its_base(capsys):
    code, out = run(capsys, "Linearized", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    scout = rows["axolotl-quants/Llama-4-Scout-17B-16E-Linearized-bnb-nf4-bf16"]
    assert code == 0 and scout["variant"] == "axolotl-llama4-linearized-experts"
    assert scout["base_config"] == "meta-llama--Llama-4-Scout-17B-16E-Instruct.json"


def test_no_match(capsys):
    code, out = run(capsys, "no-such-architecture-anywhere")
    assert code == 1 and "no catalog architecture matches" in out
    code, out = run(capsys, "no-such-architecture-anywhere", "--format", "json")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize(
    ("n", "text"), [(999_885_952, "1B"), (1_235_814_400, "1.24B"), (60_506_624, "60.5M"), (12_345, "12.3K"), (7, "7")]
)
def test_human_counts(n, text):
    assert archs.human(n) == text


def test_cli_entry_point(capsys):
    from loraplan.cli import main

    assert main(["archs", "Llama-3.2-1B", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["meta-llama/Llama-3.2-1B"]
