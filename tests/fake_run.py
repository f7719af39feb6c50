"""Stand-in for `experiments/run.py` in the sbatch tests (AVBERT_ENTRY=tests/fake_run.py): the same
command line and exit-code contract (REQUEUE_EXIT_CODE after a requested stop), the fake `progress`
target instead of training, so slurm/run_array.sbatch's trap/requeue logic is tested in seconds."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import preemption  # noqa: E402
from experiments.config import load_config  # noqa: E402
from tests.launcher_targets import progress  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--profile")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides, args.profile)
    preemption.install()
    try:
        progress(cfg)
    except preemption.Preempted as e:
        print(f"stopped: {e}", flush=True)
        return preemption.REQUEUE_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
