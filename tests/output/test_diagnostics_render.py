"""Rendering diagnostics: text (ruff/mypy style), json, GitHub workflow commands, SARIF 2.1.0."""

from __future__ import annotations

import io
import json

import pytest

from loraplan.output import diagnostics as out
from loraplan.output.diagnostics import escape_data, escape_property, render, use_color
from loraplan.schema.codes import CODES
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.load import load_text

SOURCE = "base_model: m\nlora:\n  lora_alpah: 16\n  r: 0\n"
FILE = "configs/a.yaml"


def findings() -> list[Diagnostic]:
    return load_text(SOURCE, FILE).diagnostics


WARNING = Diagnostic("LP310", "warning", "compute dtype differs", FILE, 2, 1, 2, 5, hint="use bfloat16")
INFO = Diagnostic("LP509", "info", "a note", "b.yaml", 1, 1)


class TestText:
    def test_location_code_severity_source_caret_help(self):
        text = render(findings(), "text", {FILE: SOURCE}, files=[FILE], color=False)
        assert text.splitlines()[:4] == [
            "configs/a.yaml:3:3: LP201 error: unknown key 'lora.lora_alpah'",
            " 3 |   lora_alpah: 16",
            "   |   ^~~~~~~~~~",
            "   help: did you mean 'lora_alpha'?",
        ]
        assert "configs/a.yaml:4:6: LP204 error: 'lora.r' = 0: input should be greater than or equal to 1" in text
        assert "   |      ^\n" in text  # a one-character value: a single caret
        assert text.endswith("Found 2 errors and 0 warnings in 1 file (1 file checked).\n")

    def test_source_from_a_sourcedoc(self):
        result = load_text(SOURCE, FILE)
        text = render(result.diagnostics, "text", {FILE: result.source}, color=False)
        assert " 3 |   lora_alpah: 16" in text

    def test_without_source_there_is_no_source_line(self):
        text = render([Diagnostic("LP108", "error", "cannot read file", "gone.yaml", 1, 1)], "text", color=False)
        assert text == (
            "gone.yaml:1:1: LP108 error: cannot read file\n\n"
            "Found 1 error and 0 warnings in 1 file (1 file checked).\n"
        )

    def test_multi_line_span_gets_one_caret(self):
        d = Diagnostic("LP203", "error", "bad", FILE, 2, 1, 4, 1)
        text = render([d], "text", {FILE: SOURCE}, color=False)
        assert " 2 | lora:\n   | ^\n" in text

    def test_caret_follows_tabs(self):
        d = Diagnostic("LP201", "error", "x", FILE, 1, 3, 1, 5)
        text = render([d], "text", {FILE: "\tab: 1\n"}, color=False)
        assert " 1 | \tab: 1\n   | \t ^~\n" in text

    def test_all_checks_passed(self):
        assert render([], "text", files=["a.yaml", "b.yaml"], color=False) == "All checks passed (2 files checked).\n"
        assert "All checks passed (1 file checked, 1 note)." in render([INFO], "text", files=["b.yaml"], color=False)

    def test_summary_counts_warnings_and_files(self):
        text = render([*findings(), WARNING, INFO], "text", files=[FILE, "b.yaml", "c.yaml"], color=False)
        assert text.endswith("Found 2 errors, 1 warning and 1 note in 2 files (3 files checked).\n")

    def test_color_only_when_asked(self):
        plain = render(findings(), "text", {FILE: SOURCE}, color=False)
        colored = render(findings(), "text", {FILE: SOURCE}, color=True)
        assert "\033[" not in plain
        assert "\033[1;31merror\033[0m" in colored


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestColorPolicy:
    def test_tty_without_no_color(self, monkeypatch):
        monkeypatch.delenv("NO_COLOR", raising=False)
        assert use_color(FakeTTY()) is True
        assert use_color(io.StringIO()) is False

    def test_no_color_wins_even_on_a_tty(self, monkeypatch):
        monkeypatch.setenv("NO_COLOR", "1")
        assert use_color(FakeTTY()) is False

    def test_render_follows_stdout(self, monkeypatch):
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setattr("sys.stdout", FakeTTY())
        assert "\033[" in render(findings(), "text", {FILE: SOURCE})
        monkeypatch.setenv("NO_COLOR", "1")
        assert "\033[" not in render(findings(), "text", {FILE: SOURCE})

    def test_machine_formats_never_colour(self, monkeypatch):
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setattr("sys.stdout", FakeTTY())
        for fmt in ("json", "github", "sarif"):
            assert "\033[" not in render(findings(), fmt, {FILE: SOURCE})


class TestJson:
    def test_shape(self):
        payload = json.loads(render([*findings(), WARNING], "json", files=[FILE, "other.yaml"]))
        assert payload["summary"] == {"files": 2, "files_with_findings": 1, "errors": 2, "warnings": 1, "infos": 0,
                                     "files_checked_fully": 2, "files_checked_partly": 0}
        assert payload["files"] == [FILE, "other.yaml"]
        first = payload["diagnostics"][0]
        assert first == {
            "severity": "warning",
            "code": "LP310",
            "message": "compute dtype differs",
            "file": FILE,
            "line": 2,
            "column": 1,
            "end_line": 2,
            "end_column": 5,
            "hint": "use bfloat16",
            "code_description": CODES["LP310"],
        }
        for item in payload["diagnostics"]:
            assert {"severity", "code", "message", "file", "line", "column"} <= set(item)
            assert item["line"] >= 1 and item["column"] >= 1

    def test_no_hint_key_without_a_hint(self):
        (item,) = json.loads(render([Diagnostic("LP204", "error", "m", FILE, 4, 6)], "json"))["diagnostics"]
        assert "hint" not in item and "end_line" not in item

    def test_unlocated_finding_points_at_the_file_start(self):
        (item,) = json.loads(render([Diagnostic("LP108", "error", "m", FILE)], "json"))["diagnostics"]
        assert (item["line"], item["column"]) == (1, 1)


class TestGithub:
    def test_workflow_command(self):
        lines = render([WARNING, INFO], "github").splitlines()
        assert lines[0] == "::notice file=b.yaml,line=1,col=1,title=LP509::a note"  # sorted by file
        assert lines[1] == (
            "::warning file=configs/a.yaml,line=2,col=1,endLine=2,endColumn=5,title=LP310::"
            "compute dtype differs%0Ahelp: use bfloat16"
        )
        assert lines[-1] == "Found 0 errors, 1 warning and 1 note in 2 files (2 files checked)."

    def test_escaping(self):
        assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
        assert escape_property("dir,with:odd%name") == "dir%2Cwith%3Aodd%25name"
        d = Diagnostic("LP201", "error", "50% of: a,b\nc", "we,ird:name.yaml", 1, 2)
        (line, _summary) = render([d], "github").splitlines()
        assert line == "::error file=we%2Cird%3Aname.yaml,line=1,col=2,title=LP201::50%25 of: a,b%0Ac"


class TestSarif:
    def test_shape(self):
        log = json.loads(render([*findings(), WARNING, INFO], "sarif"))
        assert log["version"] == "2.1.0"
        assert log["$schema"].endswith("sarif-2.1.0.json")
        (run,) = log["runs"]
        driver = run["tool"]["driver"]
        assert driver["name"] == "loraplan"
        rule_ids = [r["id"] for r in driver["rules"]]
        assert set(rule_ids) == set(CODES)
        for r in driver["rules"]:
            assert r["shortDescription"]["text"] == CODES[r["id"]]
        levels = {res["ruleId"]: res["level"] for res in run["results"]}
        assert levels == {"LP201": "error", "LP204": "error", "LP310": "warning", "LP509": "note"}
        for res in run["results"]:
            assert rule_ids[res["ruleIndex"]] == res["ruleId"]
            assert res["message"]["text"]
            (loc,) = res["locations"]
            region = loc["physicalLocation"]["region"]
            assert region["startLine"] >= 1 and region["startColumn"] >= 1
        unknown = next(r for r in run["results"] if r["ruleId"] == "LP201")
        assert unknown["locations"][0]["physicalLocation"] == {
            "artifactLocation": {"uri": "configs/a.yaml"},
            "region": {"startLine": 3, "startColumn": 3, "endLine": 3, "endColumn": 13},
        }
        assert unknown["message"]["text"] == "unknown key 'lora.lora_alpah'\nhelp: did you mean 'lora_alpha'?"

    def test_uris(self):
        assert out._uri("dir with space/a.yaml") == "dir%20with%20space/a.yaml"
        assert out._uri("/abs/a.yaml") == "file:///abs/a.yaml"

    def test_empty_run_is_valid(self):
        log = json.loads(render([], "sarif"))
        assert log["runs"][0]["results"] == []


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        render([], "xml")


def test_findings_are_sorted_and_deduplicated():
    d1 = Diagnostic("LP204", "error", "b", "z.yaml", 5, 1)
    d2 = Diagnostic("LP201", "error", "a", "a.yaml", 9, 1)
    payload = json.loads(render([d1, d2, d1], "json"))
    assert [d["file"] for d in payload["diagnostics"]] == ["a.yaml", "z.yaml"]
