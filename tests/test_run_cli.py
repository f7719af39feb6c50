"""experiments/run.py as a command: config errors and a changed run folder are one line and exit 2
(as launch.py), a complete run says it was skipped. No training happens in these cases."""
from __future__ import annotations

import json
import subprocess
import sys

from common.paths import CODE_ROOT
from experiments import run, run_folder
from experiments.config import load_config

CONFIG = "experiments/rq3_sharing/configs/part.yaml"


def test_config_errors_are_one_line_and_exit_2(tmp_path):
    for args in ([CONFIG, "model.bogus=1"], [str(tmp_path / "missing.yaml")], [CONFIG, "pretrain.epochs=many"]):
        proc = subprocess.run([sys.executable, "experiments/run.py", "--config", *args], cwd=CODE_ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "unknown key 'model.bogus'" in subprocess.run(
        [sys.executable, "experiments/run.py", "--config", CONFIG, "model.bogus=1"], cwd=CODE_ROOT,
        capture_output=True, text=True, timeout=120).stderr


def test_changed_config_folder_is_refused_with_a_message(tmp_path, capsys):
    over = [f"output_root={tmp_path}"]
    cfg = load_config(CONFIG, over, "smoke")
    folder = run_folder.run_dir(cfg)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text("old: run\n")
    (folder / "checkpoints" / "hash").write_text("0123456789ab\n")
    assert run.main(["--config", CONFIG, "--profile", "smoke", *over]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds a run of a different config" in err and "--restart" in err
    assert (folder / "config.yaml").read_text() == "old: run\n"  # nothing touched


def test_complete_run_says_it_was_skipped(tmp_path, capsys):
    over = [f"output_root={tmp_path}"]
    cfg = load_config(CONFIG, over, "smoke")
    folder = run_folder.run_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "status": "complete", "config_hash": run_folder.result_hash(cfg), "downstream": {"av": {"top1": 12.5, "top5": 50.0}}}))
    assert run.main(["--config", CONFIG, "--profile", "smoke", *over]) == 0
    out = capsys.readouterr()
    assert "is complete with this config: skipped" in out.err
    assert json.loads(out.out)["downstream"]["av"]["top1"] == 12.5
