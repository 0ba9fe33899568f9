"""Hostile input to the CLI and the API: bounded reads, no tracebacks, no false "passed".

Each case is one a fuzzer or a careless repository found; each would hang, crash or lie on the
code before issue 13.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import loraplan
from loraplan.schema.safe_read import ReadRefused, read_bounded

pytestmark = pytest.mark.usefixtures("plain_env")

GOOD = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  target_modules: [q_proj, v_proj]\n"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return str(path)


@pytest.fixture
def huge(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:  # sparse: 4 GB on paper, nothing on disk
        fh.truncate(4 * 1024**3)
    return str(path)


class TestBoundedReads:
    @pytest.mark.parametrize("which", ["/dev/zero", "fifo", "huge"])
    def test_config_path(self, run, request, which):
        path = "/dev/zero" if which == "/dev/zero" else request.getfixturevalue(which)
        start = time.perf_counter()
        code, out, err = run("validate", path)
        assert time.perf_counter() - start < 10
        assert code in (1, 2)
        assert "All checks passed" not in out
        assert "Traceback" not in err

    @pytest.mark.parametrize("which", ["/dev/zero", "fifo", "huge"])
    def test_config_path_is_a_located_finding(self, run, request, which):
        path = "/dev/zero" if which == "/dev/zero" else request.getfixturevalue(which)
        code, out, _ = run("validate", path)
        assert code == 1
        assert f"{path}:1:1: LP10" in out  # LP108 (not a regular file) or LP107 (too large)

    @pytest.mark.parametrize("which", ["/dev/zero", "fifo", "huge"])
    def test_base_model(self, run, write, request, which):
        target = "/dev/zero" if which == "/dev/zero" else request.getfixturevalue(which)
        path = write("c.yaml", f"base_model: {target}\nlora:\n  target_modules: [q_proj]\n")
        start = time.perf_counter()
        for command in ("validate", "plan"):
            code, out, err = run(command, path)
            assert code in (0, 1)
            assert "Traceback" not in err
        assert time.perf_counter() - start < 20
        assert "c.yaml:1:13: LP5" in out  # LP501 (not resolved) or LP512 (cannot read it)

    @pytest.mark.parametrize("which", ["/dev/zero", "fifo", "huge", "garbage", "empty-object", "missing", "array"])
    def test_arch_argument(self, run, write, request, tmp_path, which):
        arch = {
            "/dev/zero": "/dev/zero",
            "garbage": write("g.json", "garbage{"),
            "empty-object": write("e.json", "{}"),
            "array": write("a.json", "[1, 2]"),
            "missing": str(tmp_path / "nope" / "config.json"),
        }.get(which) or request.getfixturevalue(which)
        start = time.perf_counter()
        code, out, err = run("validate", "--arch", arch, write("ok.yaml", GOOD))
        assert time.perf_counter() - start < 10
        assert code == 2
        assert out == ""
        assert err.startswith("loraplan: --arch ")

    def test_a_catalog_arch_still_passes(self, run, write):
        code, out, _ = run("validate", "--arch", "meta-llama/Llama-3.2-1B", write("ok.yaml", GOOD))
        assert (code, out) == (0, "All checks passed (1 file checked).\n")

    def test_read_bounded(self, tmp_path, fifo):
        small = tmp_path / "s"
        small.write_bytes(b"abc")
        assert read_bounded(small, 3) == b"abc"
        with pytest.raises(ReadRefused) as info:
            read_bounded(small, 2)
        assert info.value.too_large
        for path in ("/dev/zero", fifo, str(tmp_path)):
            with pytest.raises(ReadRefused):
                read_bounded(path, 10)


class TestApiRaisesOnlyLoraplanErrors:
    def test_long_base_model(self, write):
        path = write("long.yaml", f"base_model: {'a' * 300}\nlora:\n  target_modules: [q_proj]\n")
        config = loraplan.load_config(path)
        with pytest.raises(loraplan.LoraplanError) as info:
            loraplan.compile(config)
        assert info.value.diagnostics[0].code == "LP501"

    def test_long_hub_id(self, write):
        path = write("long.yaml", f"base_model: {'a' * 200}/{'b' * 200}\nlora:\n  target_modules: [q_proj]\n")
        with pytest.raises(loraplan.LoraplanError):
            loraplan.compile(loraplan.load_config(path))

    def test_long_base_model_cli(self, run, write):
        path = write("long.yaml", f"base_model: {'a' * 300}\nlora:\n  target_modules: [q_proj]\n")
        code, out, err = run("plan", path)
        assert code == 1
        assert "LP501" in out and "internal error" not in out + err

    def test_nested_regex_in_load_config(self, write):
        path = write("deep.yaml", "base_model: m\nlora:\n  target_modules: '" + "(" * 500 + "a" + ")" * 500 + "'\n")
        with pytest.raises(loraplan.ConfigError) as info:
            loraplan.load_config(path)
        assert [d.code for d in info.value.diagnostics] == ["LP206"]

    def test_unreadable_config_is_config_error(self):
        with pytest.raises(loraplan.ConfigError):
            loraplan.load_config("/dev/zero")

    def test_unexpected_failure_is_wrapped(self, write, monkeypatch):
        import loraplan.compiler.compile as compile_module

        def boom(*args, **kwargs):
            raise OSError(36, "File name too long")

        monkeypatch.setattr(compile_module, "resolve_targets", boom)
        config = loraplan.load_config(write("ok.yaml", GOOD))
        with pytest.raises(loraplan.LoraplanError) as info:
            loraplan.compile(config)
        assert isinstance(info.value.__cause__, OSError)


class TestNeverClaimSuccessAfterAFailure:
    @pytest.fixture
    def crash(self, monkeypatch):
        import loraplan.schema.load as load_module

        def boom(path, dialect="auto"):
            raise RuntimeError("simulated bug")

        monkeypatch.setattr(load_module, "load_file", boom)

    def test_text(self, run, write, crash):
        code, out, err = run("validate", write("ok.yaml", GOOD))
        assert code == 2
        assert "All checks passed" not in out
        assert "ok.yaml:1:1: LP551 error: internal error: RuntimeError: simulated bug" in out
        assert "internal error" in err

    def test_json(self, run, write, crash):
        code, out, _ = run("validate", "--format", "json", write("ok.yaml", GOOD))
        assert code == 2
        report = json.loads(out)
        assert report["summary"]["errors"] == 1
        assert report["diagnostics"][0]["code"] == "LP551"

    def test_sarif(self, run, write, crash):
        code, out, _ = run("validate", "--format", "sarif", write("ok.yaml", GOOD))
        assert code == 2
        run_ = json.loads(out)["runs"][0]
        assert run_["invocations"] == [{"executionSuccessful": False}]
        assert [r["ruleId"] for r in run_["results"]] == ["LP551"]

    def test_sarif_success_says_so(self, run, write):
        code, out, _ = run("validate", "--format", "sarif", write("ok.yaml", GOOD))
        assert code == 0
        assert json.loads(out)["runs"][0]["invocations"] == [{"executionSuccessful": True}]


class TestUntrustedNamesInOutput:
    KEY = "\x1b]0;pwned\x07\nfake.yaml:1:1: LP000 error: forged"

    def test_control_characters_in_keys_are_escaped(self, run, tmp_path):
        path = tmp_path / "c\x1b[31m.yaml"
        key = json.dumps(self.KEY)  # a YAML double-quoted key with escapes
        path.write_text(f"base_model: m\nlora:\n  target_modules: [q_proj]\n  {key}: 3\n", encoding="utf-8")
        code, out, _ = run("validate", str(path))
        assert code == 1
        assert "\x1b" not in out and "\x07" not in out
        assert "\nfake.yaml" not in out
        assert "c\\x1b[31m.yaml:4:3: LP201 error: unknown key 'lora.\\x1b]0;pwned\\x07\\x0afake.yaml" in out

    @pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
    def test_non_utf8_file_name(self, tmp_path, fmt):
        name = os.fsencode(str(tmp_path)) + b"/bad\xff.yaml"
        with open(name, "w", encoding="utf-8") as fh:
            fh.write("base_model: m\nlora:\n  r: 0\n")
        proc = subprocess.run(
            [sys.executable, "-m", "loraplan", "validate", "--format", fmt, name],
            capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}, timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        out = proc.stdout.decode("utf-8")  # valid UTF-8 whatever the name's bytes
        if fmt == "sarif":
            assert "bad%FF.yaml" in json.loads(out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
                "artifactLocation"]["uri"]
        elif fmt == "json":
            assert json.loads(out)["diagnostics"][0]["file"].endswith("bad\\xff.yaml")
        else:
            assert "bad\\xff.yaml" in out

    def test_strict_ascii_stdout(self, tmp_path):
        path = tmp_path / "é.yaml"
        path.write_text("base_model: m\nlora:\n  r: 0\n  lora_alpah: 3\n", encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "loraplan", "validate", "--strict", str(path)],
            capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii", "NO_COLOR": "1"}, timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        assert b"internal error" not in proc.stderr
        assert b"LP204" in proc.stdout


@pytest.fixture(scope="module")
def plan_json(tmp_path_factory):
    from loraplan.commands.plan import compile_file

    folder = tmp_path_factory.mktemp("plans")
    config = folder / "c.yaml"
    config.write_text(GOOD, encoding="utf-8")
    plan, _, _ = compile_file(str(config), "auto", None, False)
    path = folder / "p.json"
    path.write_text(plan.to_json(), encoding="utf-8")
    return path


class TestDiffOnMalformedPlans:
    @pytest.mark.parametrize(
        "mutate",
        [
            lambda d: d.update(injections="x"),
            lambda d: d.update(totals=None),
            lambda d: d.update(coverage=[1]),
            lambda d: d["injections"][0].update(module=None, r=[1]),
            lambda d: d.update(diagnostics=[{"code": 1}]),
            lambda d: d.update(memory="lots"),
            lambda d: d.update(config=[]),
        ],
    )
    def test_mutated_plan(self, run, plan_json, tmp_path, mutate):
        data = json.loads(plan_json.read_text())
        mutate(data)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data))
        for fmt in ("text", "json"):
            code, _, err = run("diff", "--format", fmt, str(plan_json), str(bad))
            assert code in (0, 1, 2)
            assert "internal error" not in err

    def test_deeply_nested_json(self, run, plan_json, tmp_path):
        bad = tmp_path / "deep.json"
        bad.write_text('{"injections": ' + "[" * 100_000 + "]" * 100_000 + "}")
        code, _, err = run("diff", str(plan_json), str(bad))
        assert code == 2
        assert "nested too deeply" in err

    def test_dev_zero(self, run, plan_json):
        code, _, err = run("diff", str(plan_json), "/dev/zero")
        assert code == 2
        assert "internal error" not in err


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_plan_title_escapes_control_characters(run, tmp_path, fmt):
    path = tmp_path / "p\x1b]0;x\x07.yaml"
    path.write_text(GOOD, encoding="utf-8")
    code, out, _ = run("plan", "--format", fmt, str(path))
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "p\\x1b]0;x\\x07.yaml" in out


def test_diff_labels_escape_control_characters(run, tmp_path):
    a = tmp_path / "a\x1b[2J.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(GOOD, encoding="utf-8")
    b.write_text(GOOD.replace("r: 8", "r: 16"), encoding="utf-8")
    code, out, _ = run("diff", str(a), str(b))
    assert code == 1
    assert "\x1b" not in out and "a\\x1b[2J.yaml" in out


def test_compile_with_an_object_that_is_no_model_raises_loraplans_error(write):
    config = loraplan.load_config(write("ok.yaml", GOOD))
    with pytest.raises(loraplan.LoraplanError) as info:
        loraplan.compile(config, architecture=42)
    assert info.value.__cause__ is not None
