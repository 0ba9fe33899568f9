"""The `loraplan` command line: exit codes, many files, formats, --strict, the schema command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loraplan import cli
from loraplan.commands import validate as validate_cmd
from loraplan.schema import json_schema

# A catalog model, so validate checks the targets too (an unknown one is LP520, tests/commands/
# test_validate_resolution.py).
GOOD = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  target_modules: [q_proj]\n"
WARN = ("base_model: meta-llama/Llama-3.2-1B\nadapter: lora\nlora:\n  r: 8\n  loftq_config: {loftq_bits: 4}\n"
        "  target_modules: [q_proj]\n")  # LP307 warning
BAD = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 0\n"


pytestmark = pytest.mark.usefixtures("plain_env")  # write, run: tests/conftest.py


class TestExitCodes:
    def test_clean_file_exits_0(self, run, capsys, write):
        code, out, _ = run("validate", write("ok.yaml", GOOD))
        assert code == 0
        assert out == "All checks passed (1 file checked).\n"

    def test_errors_exit_1(self, run, capsys, write):
        code, out, _ = run("validate", write("bad.yaml", BAD))
        assert code == 1
        assert "bad.yaml:3:6: LP204 error:" in out

    def test_warnings_alone_exit_0(self, run, capsys, write):
        code, out, _ = run("validate", write("warn.yaml", WARN))
        assert code == 0
        assert "LP307 warning" in out

    def test_strict_makes_warnings_errors(self, run, capsys, write):
        code, out, _ = run("validate", "--strict", write("warn.yaml", WARN))
        assert code == 1
        assert "LP307 error" in out

    def test_missing_file_is_a_located_usage_error_not_a_crash(self, run, capsys, tmp_path):
        code, out, err = run("validate", str(tmp_path / "nope.yaml"))
        assert code == 2  # a path that does not exist is a usage error (README: exit codes)
        assert "nope.yaml:1:1: LP108 error: cannot read file" in out
        assert err == ""

    @pytest.mark.parametrize(
        "argv",
        [[], ["validate"], ["validate", "--format", "xml", "a.yaml"], ["validate", "--dialect", "x", "a.yaml"],
         ["frobnicate"], ["--bogus"]],
    )
    def test_usage_errors_exit_2(self, run, capsys, argv):
        code, _out, err = run(*argv)
        assert code == 2
        assert "usage: loraplan" in err

    def test_help_and_version_exit_0(self, run, capsys):
        code, out, _ = run("--help")
        assert code == 0 and "validate" in out and "schema" in out
        code, out, _ = run("--version")
        assert code == 0 and out.startswith("loraplan ")
        code, out, _ = run("validate", "--help")
        assert code == 0 and "--strict" in out and "--arch" in out

    def test_internal_error_exits_2_with_one_line_not_a_traceback(self, run, capsys, write, monkeypatch):
        def boom(*_a, **_k):
            raise RuntimeError("kaboom")

        monkeypatch.setattr("loraplan.schema.load.load_file", boom)
        code, _out, err = run("validate", write("ok.yaml", GOOD))
        assert code == 2
        assert "internal error" in err and "kaboom" in err
        assert "Traceback" not in err

    def test_compiler_failure_is_an_internal_error(self, run, capsys, write, monkeypatch):
        def broken():
            raise ImportError("compiler half-installed")

        monkeypatch.setattr(validate_cmd, "compiler_check", broken)
        code, out, err = run("validate", write("ok.yaml", GOOD))
        assert code == 2
        assert "cannot load the compiler" in err
        assert "All checks passed" in out  # the schema layer still ran


class TestManyFiles:
    def test_every_file_is_checked_and_reported_together(self, run, capsys, write):
        files = [write("a.yaml", GOOD), write("b.yaml", BAD), write("c.yaml", "lora: [\n"), write("d.yaml", WARN)]
        code, out, _ = run("validate", *files)
        assert code == 1
        assert "b.yaml:3:6: LP204" in out and "c.yaml:1:8: LP101" in out and "d.yaml:5:3: LP307" in out
        assert out.endswith("Found 2 errors and 1 warning in 3 files (4 files checked).\n")

    def test_repeated_file_is_checked_once(self, run, capsys, write):
        path = write("b.yaml", BAD)
        _code, out, _ = run("validate", path, path)
        assert out.count("LP204") == 1

    def test_examples_pass_and_invalid_examples_fail(self, run, capsys, examples_dir):
        code, out, _ = run("validate", *map(str, sorted(examples_dir.glob("*.yaml"))))
        assert code == 0, out
        assert "error" not in out and "warning" not in out
        for path in sorted((examples_dir / "invalid").glob("*.yaml")):
            code, out, _ = run("validate", str(path))
            assert code == 1, path.name


class TestFormats:
    def test_json_parses_and_has_the_agreed_shape(self, run, capsys, write):
        code, out, _ = run("validate", "--format", "json", write("b.yaml", BAD), write("a.yaml", GOOD))
        assert code == 1
        payload = json.loads(out)
        (item,) = payload["diagnostics"]
        assert (item["severity"], item["code"], item["line"], item["column"]) == ("error", "LP204", 3, 6)
        assert item["file"].endswith("b.yaml")
        assert payload["summary"]["errors"] == 1 and payload["summary"]["files"] == 2

    def test_json_when_clean(self, run, capsys, write):
        code, out, _ = run("validate", "--format", "json", write("a.yaml", GOOD))
        assert code == 0 and json.loads(out)["diagnostics"] == []

    def test_github_is_automatic_in_actions(self, run, capsys, write, monkeypatch):
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        _code, out, _ = run("validate", write("b.yaml", BAD))
        assert out.startswith("::error file=")
        assert ",line=3,col=6," in out
        _code, out, _ = run("validate", "--format", "text", write("b.yaml", BAD))
        assert "LP204 error" in out and "::error" not in out

    def test_sarif(self, run, capsys, write):
        _code, out, _ = run("validate", "--format", "sarif", write("b.yaml", BAD))
        log = json.loads(out)
        assert log["version"] == "2.1.0"
        assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["LP204"]

    def test_strict_applies_to_machine_formats(self, run, capsys, write):
        _code, out, _ = run("validate", "--strict", "--format", "json", write("d.yaml", WARN))
        assert [d["severity"] for d in json.loads(out)["diagnostics"]] == ["error"]


class TestDialect:
    def test_native_dialect_forced(self, run, capsys, write):
        code, out, _ = run("validate", "--dialect", "native", write("a.yaml", GOOD))
        assert code == 0, out


class TestSchemaCommand:
    def test_prints_the_committed_schema(self, run, capsys):
        code, out, _ = run("schema")
        assert code == 0
        assert out == json_schema.COMMITTED.read_text(encoding="utf-8")
        assert json.loads(out)["$schema"] == "http://json-schema.org/draft-07/schema#"

    def test_check_passes_when_up_to_date(self, run, capsys):
        code, out, _ = run("schema", "--check")
        assert code == 0 and "up to date" in out

    def test_check_fails_when_stale_and_says_how_to_regenerate(self, run, capsys, tmp_path, monkeypatch):
        stale = tmp_path / "loraplan.schema.json"
        stale.write_text("{}\n")
        monkeypatch.setattr(json_schema, "COMMITTED", stale)
        code, _out, err = run("schema", "--check")
        assert code == 1
        assert "loraplan schema > loraplan/schema/loraplan.schema.json" in err

    def test_output_file(self, run, capsys, tmp_path):
        target = tmp_path / "s.json"
        code, out, _ = run("schema", "-o", str(target))
        assert code == 0 and out == ""
        assert target.read_text() == json_schema.render()


def test_commands_register_independently(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ["validate", "no_such_command"])
    parser = cli.build_parser()
    assert parser.get_default("_command_names") == {"validate"}


def test_python_dash_m_and_exit_code_in_a_real_process(tmp_path, repo_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    proc = subprocess.run([sys.executable, "-m", "loraplan", "validate", str(bad)], capture_output=True, text=True,
                          cwd=repo_root, timeout=60, env={"NO_COLOR": "1", "PATH": ""})
    assert proc.returncode == 1
    assert "LP204 error" in proc.stdout
    assert "\033[" not in proc.stdout


def test_pre_commit_hook_definition(repo_root):
    import re

    import yaml

    (hook,) = yaml.safe_load((repo_root / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "loraplan-validate"
    assert hook["entry"] == "loraplan validate"
    assert hook["language"] == "python"
    files = re.compile(hook["files"])
    for name in ["qlora.loraplan.yaml", "configs/loraplan-dora.yml", "configs/loraplan/llama.yaml", "loraplan.yaml"]:
        assert files.search(name), name
    for name in [".github/workflows/ci.yml", "docker-compose.yaml", "configs/loraplan/notes.txt", "mkdocs.yml"]:
        assert not files.search(name), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("typos.yaml", [("LP205", 4, 10), ("LP201", 7, 3), ("LP205", 12, 24), ("LP204", 15, 17)]),
        ("conflicts.yaml", [("LP305", 8, 3), ("LP304", 10, 3), ("LP306", 12, 3), ("LP302", 15, 3), ("LP310", 16, 3)]),
        ("bad-yaml.yaml", [("LP102", 6, 3)]),
    ],
)
def test_invalid_examples_show_their_findings(run, capsys, examples_dir, name, expected):
    code, out, _ = run("validate", "--format", "json", str(examples_dir / "invalid" / name))
    assert code == 1
    schema_layer = [d for d in json.loads(out)["diagnostics"] if d["code"][:3] in ("LP1", "LP2", "LP3")]
    assert [(d["code"], d["line"], d["column"]) for d in schema_layer] == expected
