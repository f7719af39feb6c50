"""Launch every rq1_end_to_end config (configs/*.yaml): `python experiments/rq1_end_to_end/launch.py --help`.

All options live in experiments/launcher.py; this file only names the research question's folder.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, without PYTHONPATH

from experiments import launcher  # noqa: E402

if __name__ == "__main__":
    sys.exit(launcher.main(rq_dir=Path(__file__).resolve().parent, argv=sys.argv[1:]))
