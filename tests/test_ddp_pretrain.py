"""Two-rank pretraining on CPU (gloo) through torchrun and run.py: every rank's RNG state reaches
rank 0's last.pt. It crashed at the first checkpoint before
(all_gather_object of the RNG tensors failed to unpickle on torch 2.14). About 20 s on 2 cores."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from common.paths import CODE_ROOT


def test_two_rank_pretraining_checkpoints_every_rank(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "experiments/run.py",
           "--config", "experiments/rq3_sharing/configs/part.yaml", "--profile", "smoke",
           f"output_root={tmp_path}", "runtime.device=cpu", "downstream=[]", "pretrain.heldout_dataset=''",
           "pretrain.steps_per_epoch=3", "pretrain.checkpoint_every=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(CODE_ROOT)}
    proc = subprocess.run(cmd, cwd=CODE_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "rq3_sharing" / "part" / "checkpoints"
    last = torch.load(ckpt / "last.pt", weights_only=True)
    assert last["position"]["step"] == 3 and len(last["rng"]) == 2
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])  # seeded seed + rank
    assert (ckpt / "pretrained.pt").is_file()
