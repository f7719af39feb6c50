"""One process per run folder (issue 13, item 4): a second run.py or launcher on a folder in use says
who holds it and exits, touching nothing; a killed holder leaves no stale lock."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from common.paths import CODE_ROOT
from experiments import launcher, run, run_folder, run_lock
from experiments.config import load_config

CONFIG = "experiments/rq3_sharing/configs/part.yaml"

_HOLDER = """
import sys, time
from pathlib import Path
from experiments import run_lock
with run_lock.hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A separate process holding the run folder of part.yaml under tmp_path (smoke profile)."""
    over = [f"output_root={tmp_path}"]
    folder = run_folder.run_dir(load_config(CONFIG, over, "smoke"))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], cwd=CODE_ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(CODE_ROOT)})
    assert proc.stdout.readline().strip() == "held"
    yield over, folder, proc
    proc.kill()
    proc.wait()


def test_second_run_py_names_the_holder_and_exits_2(held, capsys):
    over, folder, proc = held
    t0 = time.time()
    assert run.main(["--config", CONFIG, "--profile", "smoke", *over]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is in use by" in err and f"pid {proc.pid}" in err, err
    assert time.time() - t0 < 30
    assert not folder.exists()  # nothing written: no config.yaml, no log


def test_second_launcher_does_not_submit_a_folder_in_use(held, monkeypatch):
    over, folder, proc = held
    submitted = []
    for name in ("submit_local", "submit_slurm", "run_debug"):
        monkeypatch.setattr(launcher, name, lambda *a, **k: submitted.append(a))
    out = io.StringIO()
    summary = launcher.launch(CODE_ROOT / "experiments" / "rq3_sharing",
                              ["--only", "part", "--profile", "smoke", "--cluster", "debug", *over], out=out)
    assert submitted == []
    assert f"in use by pid {proc.pid}" in out.getvalue()
    assert summary.exit_code == 0


def test_a_killed_holder_leaves_no_stale_lock(held):
    over, folder, proc = held
    assert f"pid {proc.pid}" in run_lock.holder(folder)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_lock.holder(folder) is None
    with run_lock.hold(folder):  # and this process can take it
        assert run_lock.holder(folder) is not None
