"""The installed commands (pyproject.toml [project.scripts], `pip install -e .`) point at functions that
exist and behave as the scripts of a plain clone; run without installing (the CI installs only
requirements.txt)."""
from __future__ import annotations

import importlib
import io
import tomllib
from contextlib import redirect_stderr

import pytest

from common.paths import CODE_ROOT
from experiments import commands
from tables import commands as table_commands

CONFIG = "experiments/rq3_sharing/configs/part.yaml"


def test_every_entry_point_resolves_to_a_function():
    scripts = tomllib.loads((CODE_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"avbert-run", "avbert-launch", "avbert-tables"}
    for target in scripts.values():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_launch_names_the_research_questions_and_dry_runs_one(tmp_path, capsys):
    assert commands.research_questions() == ["rq1_end_to_end", "rq2_fusion", "rq3_sharing", "rq4_negatives",
                                             "rq5_transfer"]
    assert commands.launch([]) == 2 and commands.launch(["rq9"]) == 2
    err = capsys.readouterr().err
    assert "unknown research question 'rq9'" in err and "rq3_sharing" in err
    assert commands.launch(["rq3_sharing", "--dry-run", f"output_root={tmp_path}"]) == 0
    assert "rq3_sharing: 5 config(s)" in capsys.readouterr().out
    assert not (tmp_path / "rq3_sharing").exists()  # a dry run writes nothing


def test_run_finds_a_relative_config_in_the_checkout_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert commands.config_path(CONFIG) == str(CODE_ROOT / CONFIG)
    assert commands.config_path("missing.yaml") == "missing.yaml"  # reported as missing by run.py
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    assert commands.config_path("mine.yaml") == "mine.yaml"  # a file under the cwd wins
    assert commands.run(["--config", CONFIG, "--print-config"]) == 0
    assert "rq: rq3_sharing" in capsys.readouterr().out
    assert commands.run([f"--config={CONFIG}", "--print-config"]) == 0


def test_tables_command_dispatches_and_keeps_the_scripts_errors(tmp_path):
    with pytest.raises(SystemExit) as e, redirect_stderr(io.StringIO()) as err:
        table_commands.main(["3"])
    assert e.value.code == 2 and "usage: avbert-tables" in err.getvalue()
    with pytest.raises(SystemExit) as e, redirect_stderr(io.StringIO()) as err:
        table_commands.main(["claims", "--results", str(tmp_path / "none")])
    assert e.value.code == 2 and "does not exist" in err.getvalue()
