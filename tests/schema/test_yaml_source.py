"""The positioned YAML loader: every problem with the text is a located finding, never a traceback."""

from __future__ import annotations

import time

import pytest

from loraplan.schema import yaml_source
from loraplan.schema.diagnostic import Span
from loraplan.schema.yaml_source import MAX_FILE_BYTES, decode, parse_text, read_source


def found(text: str) -> list[tuple[str, int, int]]:
    _doc, diags = parse_text(text, "t.yaml")
    return [(d.code, d.line, d.column) for d in diags]


def test_valid_document_records_key_and_value_spans():
    doc, diags = parse_text("base_model: m\nlora:\n  r: 16\n  target_modules: [q_proj, v_proj]\n", "t.yaml")
    assert diags == []
    assert doc.data == {"base_model": "m", "lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}}
    assert doc.keys[("lora", "r")] == Span(3, 3, 3, 4)
    assert doc.values[("lora", "r")] == Span(3, 6, 3, 8)
    assert doc.values[("lora", "target_modules", 1)] == Span(4, 28, 4, 34)
    assert doc.span(("lora", "r", "missing")) == Span(3, 6, 3, 8)  # nearest ancestor that exists


def test_empty_value_is_located_at_its_key():
    doc, _ = parse_text("base_model: m\nlora:\n", "t.yaml")
    assert doc.span(("lora",)) == Span(2, 1, 2, 5)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3, 2),  # unclosed flow sequence, found at the ':' of c
        ("a: 1\n  b: 2\n", 2, 4),  # mapping value in the wrong place
        ("a:\n\tb: 1\n", 2, 1),  # a tab cannot indent YAML
        ('a: "\\q"\n', 1, 6),  # unknown escape character, at the 'q'
        ("a: [1\n", 1, 4),  # unclosed at end of file: pointed at where it opened
        ("lora: [\n\n", 1, 8),  # nothing after '[': pointed just after the last text
        ("a: *nope\n", 1, 4),  # undefined alias
        ("a: 1\n---\nb: 2\n", 2, 1),  # two documents
        ("a: !!python/object:os.system x\n", 1, 4),  # no arbitrary Python objects
        ("a: !!int xyz\n", 1, 4),  # a scalar that cannot be built
        ("a: b\x07c\n", 1, 5),  # a control character
    ],
)
def test_syntax_errors_are_located(text, line, column):
    assert found(text) == [("LP101", line, column)]


def test_syntax_error_message_names_what_is_open():
    _doc, diags = parse_text("a: 1\nb: [1, 2\nc: 3\n", "t.yaml")
    assert "flow sequence at line 2, column 4" in diags[0].message


def test_duplicate_keys_are_reported_at_the_second_one():
    doc, diags = parse_text("lora:\n  r: 16\n  lora_alpha: 32\n  r: 8\n", "t.yaml")
    assert [(d.code, d.line, d.column, d.end_column) for d in diags] == [("LP102", 4, 3, 4)]
    assert "first at line 2" in diags[0].message
    assert doc.data["lora"]["r"] == 8  # what PyYAML would silently keep


def test_same_key_in_different_mappings_is_no_duplicate():
    assert found("a: {r: 1}\nb: {r: 2}\n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "file is empty"), ("\n\n   \n", "file is empty"), ("---\n", "file is empty"),
     ("# only a comment\n# and another\n", "file has only comments, no config")],
)
def test_empty_and_comment_only_files(text, message):
    doc, diags = parse_text(text, "t.yaml")
    assert doc is None
    assert [(d.code, d.line, d.column, d.message) for d in diags] == [("LP103", 1, 1, message)]


@pytest.mark.parametrize(
    ("text", "kind", "line"),
    [("- a\n- b\n", "a list", 1), ("# c\nhello\n", "a string", 2), ("42\n", "an integer", 1), ("~\n", "null", 1)],
)
def test_non_mapping_top_level(text, kind, line):
    doc, diags = parse_text(text, "t.yaml")
    assert doc is None
    assert [(d.code, d.line, d.column) for d in diags] == [("LP104", line, 1)]
    assert f"top level is {kind};" in diags[0].message


@pytest.mark.parametrize(
    ("raw", "line", "column"),
    [
        (b"a: 1\nb: \xff\n", 2, 4),
        (b"a: \xc3\xa9\xff\n", 1, 5),  # columns count characters, not bytes: '\xc3\xa9' is one
        (b"\xef\xbb\xbfa: \xfe\n", 1, 4),  # the BOM is not a column
        (b"a: \xc3\n", 1, 4),  # truncated sequence
    ],
)
def test_invalid_utf8_is_located(raw, line, column, tmp_path):
    text, diags = decode(raw, "t.yaml")
    assert text is None
    assert [(d.code, d.line, d.column) for d in diags] == [("LP105", line, column)]
    path = tmp_path / "bad.yaml"
    path.write_bytes(raw)
    assert [(d.code, d.line, d.column) for d in read_source(path)[1]] == [("LP105", line, column)]


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfbase_model: m\nlora: {r: 4}\n")
    doc, diags = read_source(path)
    assert diags == []
    assert doc.data == {"base_model": "m", "lora": {"r": 4}}
    assert doc.keys[("base_model",)] == Span(1, 1, 1, 11)


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_finishes_fast_with_bounded_work(monkeypatch):
    calls = 0
    real_build = yaml_source._Builder.build

    def counting_build(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        return real_build(self, *args, **kwargs)

    monkeypatch.setattr(yaml_source._Builder, "build", counting_build)
    start = time.perf_counter()
    doc, diags = parse_text(billion_laughs(), "t.yaml")  # 9**9 = 387 million strings if expanded
    elapsed = time.perf_counter() - start
    assert doc is None
    assert [d.code for d in diags] == ["LP106"]
    assert calls <= yaml_source.MAX_NODES + 1
    assert elapsed < 5


def test_modest_aliases_are_fine():
    doc, diags = parse_text("common: &c {r: 8}\nlora:\n  <<: *c\n  lora_alpha: 16\n", "t.yaml")
    assert diags == []
    assert doc.data["lora"] == {"r": 8, "lora_alpha": 16}


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a\n  b: *a\n"])
def test_recursive_alias(text):
    doc, diags = parse_text(text, "t.yaml")
    assert doc is None
    assert [(d.code, d.line, d.column) for d in diags] == [("LP106", 1, 4)]
    assert "recursive" in diags[0].message


@pytest.mark.parametrize("depth", [100, 20_000])
def test_deep_nesting_is_refused_quickly(depth):
    start = time.perf_counter()
    doc, diags = parse_text("a: " + "[" * depth + "]" * depth + "\n", "t.yaml")
    assert doc is None
    assert [d.code for d in diags] == ["LP107"]
    assert "nesting" in diags[0].message
    assert time.perf_counter() - start < 5


def test_deep_block_nesting_points_at_the_first_level_too_deep():
    text = "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 100))
    _doc, diags = parse_text(text, "t.yaml")
    assert [(d.code, d.line) for d in diags] == [("LP107", yaml_source.MAX_DEPTH + 1)]


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("k: v\n" * (MAX_FILE_BYTES // 5 + 10))
    start = time.perf_counter()
    doc, diags = read_source(path)
    assert time.perf_counter() - start < 0.5
    assert doc is None
    assert [(d.code, d.line, d.column) for d in diags] == [("LP107", 1, 1)]
    assert f"{MAX_FILE_BYTES:,} bytes" in diags[0].message


def test_huge_text_is_refused_too():
    _doc, diags = parse_text("k: v\n" * (MAX_FILE_BYTES // 5 + 10), "t.yaml")
    assert [d.code for d in diags] == ["LP107"]


def test_large_file_within_the_limit_uses_the_fast_parser_and_keeps_positions():
    text = "".join(f"key{i}: value{i}\n" for i in range(20_000))  # ~330 KB: above C_PARSER_BYTES
    assert len(text) > yaml_source.C_PARSER_BYTES
    start = time.perf_counter()
    doc, diags = parse_text(text + "key5: again\n", "t.yaml")
    assert time.perf_counter() - start < 5
    assert [(d.code, d.line, d.column) for d in diags] == [("LP102", 20_001, 1)]
    assert doc.values[("key19999",)] == Span(20_000, 11, 20_000, 21)


def test_too_many_values_without_aliases_is_a_size_finding(monkeypatch):
    monkeypatch.setattr(yaml_source, "MAX_NODES", 50)
    _doc, diags = parse_text("".join(f"k{i}: {i}\n" for i in range(100)), "t.yaml")
    assert [d.code for d in diags] == ["LP107"]


class TestMergeKeys:
    def test_explicit_keys_win_and_keep_their_positions(self):
        text = "base: &b {r: 1, lora_alpha: 2}\nlora:\n  r: 3\n  <<: *b\n"
        doc, diags = parse_text(text, "t.yaml")
        assert diags == []
        assert doc.data["lora"] == {"r": 3, "lora_alpha": 2}
        assert doc.keys[("lora", "r")] == Span(3, 3, 3, 4)  # not the anchor's 'r' on line 1
        assert doc.keys[("lora", "lora_alpha")].line == 1  # a merged key points at the anchor

    def test_list_of_sources_earlier_wins(self):
        doc, _ = parse_text("x: &x {a: 1}\ny: &y {a: 2, b: 2}\nz:\n  <<: [*x, *y]\n", "t.yaml")
        assert doc.data["z"] == {"a": 1, "b": 2}

    def test_merging_a_scalar_is_a_finding(self):
        assert found("x: &x 5\nz:\n  <<: *x\n") == [("LP101", 1, 4)]


def test_collection_key_is_a_finding():
    assert found("? [a, b]\n: 1\nc: 2\n") == [("LP109", 1, 3)]


def test_unreadable_file_is_located_at_its_start(tmp_path):
    _doc, diags = read_source(tmp_path / "nope.yaml")
    assert [(d.code, d.line, d.column) for d in diags] == [("LP108", 1, 1)]
    _doc, diags = read_source(tmp_path)  # a directory
    assert [d.code for d in diags] == ["LP108"]


def test_lone_surrogate_in_text_is_a_finding():
    assert found("a: \ud800\n") == [("LP105", 1, 4)]


def test_line_text():
    doc, _ = parse_text("a: 1\nb: 2\n", "t.yaml")
    assert doc.line_text(2) == "b: 2"
    assert doc.line_text(3) == ""


def test_windows_line_endings_keep_positions():
    text = "base_model: m\r\nlora:\r\n  r: 16\r\n  r: 8\r\n"
    doc, diags = parse_text(text, "t.yaml")
    assert [(d.code, d.line, d.column) for d in diags] == [("LP102", 4, 3)]
    assert doc.line_text(3) == "  r: 16"


def test_old_mac_line_endings_count_as_lines_as_in_yaml():
    assert found("a: 1\rb: c: d\r") == [("LP101", 2, 5)]
    assert found("a: 1\rb: [\r") == found("a: 1\nb: [\n")


@pytest.mark.parametrize(
    ("text", "tag", "where"),
    [
        ("lora: !!set {a, b}\n", "!!set", (1, 7)),
        ("lora:\n  target_modules: !custom [q_proj]\n", "!custom", (2, 19)),
        ("lora: !!omap [{a: 1}]\n", "!!omap", (1, 7)),
        ("lora: !!python/object:x\n  r: 8\n", "!!python/object:x", (1, 7)),
    ],
)
def test_tags_on_collections_are_reported(text, tag, where):
    """LP110: a tag on a mapping or list is not silently dropped (issue 13)."""
    _doc, diagnostics = parse_text("base_model: m\n" + text, "c.yaml")
    [d] = [d for d in diagnostics if d.code == "LP110"]
    assert f"`{tag}`" in d.message
    assert (d.line - 1, d.column) == where


def test_plain_collection_tags_are_fine():
    _doc, diagnostics = parse_text("base_model: m\nlora: !!map {r: 8, target_modules: !!seq [q]}\n", "c.yaml")
    assert diagnostics == []
