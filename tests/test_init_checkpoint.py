"""pretrain.init_checkpoint: evaluations (or pretraining) start from given weights, e.g. the released
ones converted by `python -m model.convert_released`."""
from __future__ import annotations

import pytest
import torch

from experiments.config import load_config
from experiments.run import execute
from experiments.stages import load_init_file
from model.build import build_model

CONFIG = "experiments/rq3_sharing/configs/part.yaml"
EVAL = ("downstream=[{name: a, task: esc_like, model: a_cnn, modalities: [audio], segments: 1, spatial_crops: 1, "
        "epochs: 2, batch_size: 64, lr: 1.0e-2, dropout: 0.0}]")


def test_missing_or_malformed_checkpoint_is_a_clear_error(tmp_path):
    assert load_init_file("") is None
    with pytest.raises(FileNotFoundError, match="init_checkpoint"):
        load_init_file(str(tmp_path / "nope.pt"))
    torch.save({"weights": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no 'model' state dict"):
        load_init_file(str(tmp_path / "bad.pt"))


def test_evaluations_start_from_the_given_weights(tmp_path):
    base = [f"output_root={tmp_path / 'results'}", "pretrain.enabled=false", "runtime.num_threads=1", EVAL]
    cfg = load_config(CONFIG, base, "smoke")
    model = build_model(cfg.model)
    torch.save({"model": model.state_dict()}, tmp_path / "init.pt")
    m = execute(load_config(CONFIG, [*base, f"pretrain.init_checkpoint={tmp_path / 'init.pt'}"], "smoke"))
    assert m["downstream"]["a"]["init"] == "pretrained"
    # the same weights as a random init with the same seed would give the same result: they were loaded
    # (a state dict of another architecture would not load at all)
    other = load_config(CONFIG, [*base, "model.sharing=none"], "smoke")
    torch.save({"model": build_model(other.model).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match="state_dict"):
        execute(load_config(CONFIG, [*base, "name=other", f"pretrain.init_checkpoint={tmp_path / 'other.pt'}"],
                            "smoke"))
