"""FILE arguments: folders are walked for YAML, a missing path is a usage error (issue 13)."""

from __future__ import annotations

import json

import pytest

from loraplan.commands.file_args import expand

pytestmark = pytest.mark.usefixtures("plain_env")

GOOD = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  target_modules: [q_proj]\n"
BAD = "base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 0\n"


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "configs" / "nested").mkdir(parents=True)
    (tmp_path / "configs" / "a.yaml").write_text(GOOD)
    (tmp_path / "configs" / "nested" / "b.yml").write_text(BAD)
    (tmp_path / "configs" / "notes.txt").write_text("not yaml")
    (tmp_path / "configs" / ".hidden").mkdir()
    (tmp_path / "configs" / ".hidden" / "c.yaml").write_text(BAD)
    (tmp_path / "configs" / "node_modules").mkdir()
    (tmp_path / "configs" / "node_modules" / "d.yaml").write_text(BAD)
    return tmp_path


def test_a_folder_is_walked_for_yaml(run, tree):
    code, out, _ = run("validate", "--format", "json", str(tree / "configs"))
    report = json.loads(out)
    assert [f.rsplit("configs", 1)[1] for f in report["files"]] == ["/a.yaml", "/nested/b.yml"]
    assert code == 1
    assert {d["file"].rsplit("/", 1)[1] for d in report["diagnostics"]} == {"b.yml"}


def test_folder_and_file_together_check_each_file_once(run, tree):
    code, out, _ = run("validate", str(tree / "configs"), str(tree / "configs" / "a.yaml"))
    assert code == 1  # nested/b.yml has an error
    assert "(2 files checked)" in out


def test_an_empty_folder_warns(run, tmp_path):
    code, out, err = run("validate", str(tmp_path))
    assert code == 0 and "0 files checked" in out
    assert "no *.yaml or *.yml file under" in err


def test_a_missing_path_exits_2_and_is_still_reported(run, tmp_path, write):
    good = write("ok.yaml", GOOD)
    code, out, _ = run("validate", good, str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml:1:1: LP108 error: cannot read file" in out


@pytest.mark.parametrize("command", ["plan", "export-peft"])
def test_plan_and_export_missing_config_exit_2(run, tmp_path, command):
    code, _, _ = run(command, str(tmp_path / "nope.yaml"))
    assert code == 2


def test_symlinked_folders_are_not_followed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text(GOOD)
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    assert [p.rsplit("/", 2)[-2:] for p in expand([str(tmp_path / "a")]).files] == [["a", "x.yaml"]]
