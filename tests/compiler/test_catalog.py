"""Catalog lookups, aliases, provenance rows, manifest encoding, and loading without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from loraplan.compiler.architecture import Architecture, ModuleInfo, ParamInfo
from loraplan.compiler.catalog import (
    CONFIGS_DIR,
    SOURCE_COLUMNS,
    build_catalog,
    canonical_sha256,
    catalog,
    default_hub_id,
    list_catalog,
    load_catalog_architecture,
    lookup,
    lookup_config_content,
    normalise_file,
    read_sources,
    suggest,
)
from loraplan.compiler.catalog.manifest import decode, dumps, encode
from loraplan.errors import ResolveError


def test_lookup_hub_id_case_insensitive():
    e = lookup("meta-llama/Meta-Llama-3-8B")
    assert e is not None and e.name == "meta-llama/Meta-Llama-3-8B"
    assert lookup("META-LLAMA/meta-llama-3-8b") is e
    assert lookup("  meta-llama/Meta-Llama-3-8B/ ") is e
    assert e.model_class == "LlamaForCausalLM" and e.num_layers == 32


def test_lookup_aliases_from_tsv_rows():
    # sources-A.tsv: NousResearch mirrors are aliases of Meta's repos.
    assert lookup("NousResearch/Meta-Llama-3-8B").name == "meta-llama/Meta-Llama-3-8B"
    assert lookup("nousresearch/llama-2-7b-hf").name == "meta-llama/Llama-2-7b-hf"


def test_lookup_file_stem_and_bare_name():
    assert lookup("meta-llama--Llama-3.2-1B").name == "meta-llama/Llama-3.2-1B"
    assert lookup("Llama-3.1-405B").name == "meta-llama/Llama-3.1-405B"
    assert lookup("gpt2").name == "openai-community/gpt2"


def test_lookup_misses():
    assert lookup("meta-llama/Llama-9-1T") is None
    assert lookup("") is None
    assert lookup("other-org/Llama-3.1-405B") is None  # a hub id must match exactly, org included


def test_suggest_close_names():
    assert "meta-llama/Llama-3.2-1B" in suggest("meta-llama/Llama-3.2-1b-Instructt")
    assert suggest("meta-lama/Llama-3.1-8B")[0] == "meta-llama/Llama-3.1-8B"
    assert suggest("zzzzzzzz/qqqqqqq") == []


def _index(*files: str) -> dict:
    entry = {
        "manifest": "",
        "model_type": "llama",
        "model_class": "LlamaForCausalLM",
        "num_layers": 2,
        "total_params": 10,
        "num_modules": 3,
        "config_sha256": "",
        "auto_classes": {"AutoModelForCausalLM": "LlamaForCausalLM", "AutoModel": "LlamaModel"},
    }
    return {"entries": {f: {**entry, "manifest": f, "config_sha256": f} for f in files}}


def _row(file, hub_id, aliases=(), line=2):
    from loraplan.compiler.catalog import SourceRow

    return SourceRow(file, hub_id, tuple(aliases), "", "", "", "", "sources-x.tsv", line)


def test_build_catalog_names_conflicts_and_bare_ambiguity():
    cat = build_catalog(
        _index("a--m.json", "b--m.json", "derived/c--z.json"),
        [
            _row("a--m.json", "a/m", ["mirror/m-fast"]),
            _row("a--m.json", "a/m-renamed"),  # a second hub id for the same file: an alias
            _row("b--m.json", "b/m", ["mirror/m-fast"]),  # conflicting alias
            _row("missing.json", "x/y"),
        ],
    )
    names = {e.name: e for e in cat.entries}
    assert set(names) == {"a/m", "b/m", "c/z"}  # c/z from the file name: no row names it
    assert names["a/m"].aliases == ("a/m-renamed", "mirror/m-fast")
    assert cat.conflicts == {"mirror/m-fast": {"a/m", "b/m"}}
    assert cat.bare["m"] == {"a/m", "b/m"}  # bare "m" is ambiguous
    assert [r.file for r in cat.orphan_rows] == ["missing.json"]


def test_entry_builds_auto_classes():
    cat = build_catalog(_index("a--m.json"), [])
    e = cat.entries[0]
    assert e.builds(None) and e.builds("LlamaForCausalLM") and e.builds("AutoModelForCausalLM")
    assert not e.builds("AutoModel") and not e.builds("LlamaForSequenceClassification")


def test_read_sources_tsv(tmp_path):
    (tmp_path / "sources-shared.tsv").write_text(
        "\t".join(SOURCE_COLUMNS) + "\n" + "derived/o--n.json\to/n\t\trepo\tpath\tabc\tnote\n"
    )
    (tmp_path / "sources-A.tsv").write_text(
        "file\thub_id\taliases\n./o--p.json\to/p\tx/p, y/p;z/p\n\n"  # extra columns may be missing
    )
    rows = read_sources(tmp_path)
    assert [r.tsv for r in rows] == ["sources-shared.tsv", "sources-A.tsv"]  # shared first
    assert rows[0].file == "derived/o--n.json" and rows[0].commit == "abc" and rows[0].line == 2
    assert normalise_file("/x/shared/corpus/hf-configs/tiny/t--m.json") == "tiny/t--m.json"
    assert rows[1].file == "o--p.json" and rows[1].aliases == ("x/p", "y/p", "z/p") and rows[1].note == ""


def test_default_hub_id():
    assert default_hub_id("derived/meta-llama--Llama-2-7b-hf.json") == "meta-llama/Llama-2-7b-hf"


def test_every_bundled_tsv_row_names_a_catalog_config():
    assert catalog().orphan_rows == [], "a sources*.tsv row names a config that is not in configs/"
    for row in read_sources():
        assert (CONFIGS_DIR / row.file).is_file(), f"{row.tsv}:{row.line}: {row.file}"


def test_no_name_points_at_two_entries():
    assert catalog().conflicts == {}


def test_every_shared_corpus_config_is_in_the_catalog():
    rows = [r for r in read_sources() if r.tsv == "sources-shared.tsv"]
    assert len(rows) >= 26
    for r in rows:
        assert lookup(r.hub_id) is not None and lookup(r.hub_id).config_file == r.file


def test_local_copy_of_a_catalog_config_is_recognised():
    e = lookup("openai-community/gpt2")
    data = json.loads(e.config_path.read_text())
    assert lookup_config_content(dict(reversed(list(data.items())))) is e  # key order does not matter
    assert lookup_config_content({**data, "n_layer": 3}) is None
    assert canonical_sha256(data) == e.config_sha256


def test_load_405b_and_deepseek():
    a = load_catalog_architecture("meta-llama/Llama-3.1-405B")
    assert isinstance(a, Architecture) and a.source == "catalog" and a.name == "meta-llama/Llama-3.1-405B"
    assert a.num_layers == 126 and a.total_params == 405_853_388_800
    assert a.module("model.layers.125.mlp.down_proj").in_features == 53248
    d = load_catalog_architecture("deepseek-ai/DeepSeek-V3")
    assert d.module("model.layers.2.mlp.gate_proj") is not None  # first 3 layers dense
    assert d.module("model.layers.3.mlp.experts").kind == "other"
    assert {p.name for p in d.parameters if p.module == "model.layers.60.mlp.experts"} == {
        "model.layers.60.mlp.experts.gate_up_proj",
        "model.layers.60.mlp.experts.down_proj",
    }


def test_load_unknown_name_is_lp501_with_suggestion():
    with pytest.raises(ResolveError) as info:
        load_catalog_architecture("meta-llama/Llama-3.1-8b-typo")
    (d,) = info.value.diagnostics
    assert d.code == "LP501" and "meta-llama/Llama-3.1-8B" in d.hint


def test_list_catalog_sorted_and_complete():
    entries = list_catalog()
    assert [e.name.lower() for e in entries] == sorted(e.name.lower() for e in entries)
    assert len(entries) == len({e.config_file for e in entries}) >= 27


def _custom_arch() -> Architecture:
    """Blocks 0-1 alike, block 2 different, block 3 empty (shared module), tied params, root param."""
    mods = [ModuleInfo("emb", "Embedding", "embedding", 10, 4, False, 40, None, (10, 4))]
    params = [ParamInfo("scale", "", (1,), None), ParamInfo("emb.weight", "emb", (10, 4), None)]
    mods.append(ModuleInfo("net.layers", "ModuleList", "container"))
    for i in range(3):
        block = f"net.layers.{i}"
        mods.append(ModuleInfo(block, "Block", "container", layer=None))
        out = 8 if i < 2 else 6
        mods.append(
            ModuleInfo(f"{block}.lin", "Linear", "linear", 4, out, True, 4 * out + out, i, (out, 4), {"k": [1]})
        )
        params += [ParamInfo(f"{block}.lin.weight", f"{block}.lin", (out, 4), i)]
        params += [ParamInfo(f"{block}.lin.bias", f"{block}.lin", (out,), i)]
    mods.append(ModuleInfo("head", "Linear", "linear", 4, 10, False, 40, None, (10, 4)))
    return Architecture(
        name="custom",
        model_type="custom",
        model_class="Custom",
        modules=mods,
        parameters=params,
        output_embedding=None,
        input_embedding="emb",
        tied_embeddings=True,
        num_layers=4,
        main_stack="net.layers",
        layer_stacks={"net.layers": 4},
        tied_parameters={"head.weight": "emb.weight"},
        config_attrs={"hidden_size": 4},
    )


def test_manifest_roundtrip_with_uneven_blocks():
    arch = _custom_arch()
    data = json.loads(dumps(encode(arch)))
    assert len(data["templates"]) == 3  # blocks 0-1, block 2, empty block 3
    (stack,) = [row for row in data["body"] if row[0] == "@stack"]
    assert stack[2] == [[0, 2], [1, 1], [2, 1]]
    back = decode(data, "custom", source="module")
    assert back.modules == arch.modules and back.parameters == arch.parameters
    assert back.to_dict() == {**arch.to_dict()}


def test_manifest_rejects_unknown_format():
    data = encode(_custom_arch())
    data["format"] = 99
    with pytest.raises(ValueError, match="regenerate"):
        decode(data, "x")


def test_expansion_is_fast():
    from loraplan.compiler.catalog import _manifest_data

    entry = lookup("meta-llama/Llama-3.1-405B")
    _manifest_data(entry.manifest_file)
    start = time.perf_counter()
    for _ in range(5):
        load_catalog_architecture(entry)
    assert (time.perf_counter() - start) / 5 < 0.1


def test_catalog_and_resolve_import_no_torch():
    code = """
import sys
from loraplan.compiler.catalog import load_catalog_architecture, list_catalog
from loraplan.compiler.resolve import resolve_architecture, can_resolve_offline
from loraplan.schema.load import load_text
a = load_catalog_architecture("deepseek-ai/DeepSeek-V3")
assert len(list_catalog()) > 20
cfg = load_text("base_model: NousResearch/Meta-Llama-3-8B\\nlora: {r: 8}\\n").config
assert can_resolve_offline(cfg)
b = resolve_architecture(cfg, allow_torch=False)
assert b.name == "meta-llama/Meta-Llama-3-8B", b.name
heavy = [m for m in ("torch", "transformers", "peft", "bitsandbytes", "huggingface_hub") if m in sys.modules]
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
