"""The evaluation path for the authors' checkpoint: convert the released fixture file with the CLI, then
score KS-shaped shards with experiments/rq5_transfer/released/ks_test.yaml (protocol: test, no
training). Clip i's label is the class the converted released model ranks i-th (computed here directly,
outside the pipeline), so the pipeline must report top-1 1/6 and top-5 5/6 exactly: it can only do so
if it loaded the released backbone *and* heads and applied the released test protocol."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments.config import ConfigError, load_config
from experiments.run import execute
from model.convert_released import main as convert_main
from model.heads import head_scores
from model.infer_config import config_from_dict, config_overrides
from data.encode import EncodeOptions, encode_clip
from tests.fixtures.data_media import meta, write_task
from tests.test_released_parity import FIX, build_from

CONFIG = "experiments/rq5_transfer/released/ks_test.yaml"
CLASSES = [f"class_{i}" for i in range(7)]  # the fixture's 7 classes
N_TEST = 6
DATA = ["data.synthetic=false", "data.num_workers=0", "data.video.fps=8", "data.video.frames_per_segment=4",
        "data.video.crop=48", "data.video.train_jitter_scales=[48,64]", "data.video.test_size=48",
        "data.audio.sample_rate=8000", "data.audio.mel_bins=40", "data.audio.mel_frames=64",
        "runtime.device=cpu", "runtime.amp=false", "runtime.num_threads=1"]
EVAL = ("downstream=[{name: ks_released, task: kinetics_sounds, protocol: test, model: m_bert, "
        "segments: 3, spatial_crops: 3, batch_size: 2}]")  # 3 segments: the fixture's position table


def _convert(tmp_path):
    out = tmp_path / "c.pt"
    assert convert_main([str(FIX / "released_checkpoint.pyth"), str(out), "--heads", "4"]) == 0
    return out


def _clip(i: int) -> bytes:
    """2 s of clip-specific content: a random colour field and a random tone (the fixture model's
    random weights then give different predictions for different clips)."""
    rng = np.random.default_rng(i)
    frames = np.broadcast_to(rng.integers(0, 256, (1, 48, 64, 3), dtype=np.uint8), (16, 48, 64, 3)).copy()
    t = np.arange(16000) / 8000
    wave = (0.4 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)).astype(np.float32)
    return encode_clip(frames, wave, 8, 8000, EncodeOptions(aac_coder="fast"))


def _task(root, labels):
    clips = [(f"c{i}", _clip(i), meta(f"c{i}", 2.0, label=int(labels[i]))) for i in range(N_TEST)]
    write_task(root / "kinetics_sounds", {"test": clips}, CLASSES)


def test_released_checkpoint_scores_ks_shards_with_no_training(tmp_path):
    ckpt = _convert(tmp_path)
    conv = torch.load(ckpt, weights_only=True)
    model_over = config_overrides(config_from_dict(conv["model_config"]))
    over = [*DATA, *model_over, f"data.root={tmp_path / 'data'}", f"output_root={tmp_path / 'results'}",
            f"pretrain.init_checkpoint={ckpt}", EVAL]
    cfg = load_config(CONFIG, over, "paper")

    # the released model's class ranking on these clips, computed directly (not through run_eval)
    _task(tmp_path / "data", [0] * N_TEST)
    from data.pipeline import make_downstream_loader

    dm = build_from(conv, torch.float32)
    scores = []
    with torch.no_grad():
        loader = make_downstream_loader(cfg.data, tmp_path / "data" / "kinetics_sounds", "test", segments=3,
                                        train=False, batch_size=2, spatial_crops=3)
        for b in loader:
            video, audio = loader.model_inputs(b)
            v = video.shape[1]
            s = head_scores(dm.head_logits(dm.features(video.flatten(0, 1), audio.flatten(0, 1))), False)
            scores.append(s.view(-1, v, s.shape[-1]).mean(1))
    scores = torch.cat(scores)
    assert scores.shape == (N_TEST, 7)
    assert float(scores.sort(1).values.diff(1).min()) > 1e-6  # no ties: ranks are well defined
    # clip i is labelled with the class the released model ranks i-th: top-1 must be 1/6, top-5 5/6
    labels = [int(scores[i].argsort(descending=True)[i]) for i in range(N_TEST)]

    (tmp_path / "data").rename(tmp_path / "placeholder")
    _task(tmp_path / "data", labels)
    m = execute(cfg)
    r = m["downstream"]["ks_released"]
    assert r["protocol"] == "test" and r["init"] == "pretrained" and r["num_train"] == 0
    assert r["num_test"] == N_TEST
    assert r["top1"] == pytest.approx(100 / 6, abs=1e-3) and r["top5"] == pytest.approx(500 / 6, abs=1e-3)
    assert json.loads((tmp_path / "results" / "rq5_transfer" / "released_ks" / "metrics.json").read_text())[
        "downstream"]["ks_released"]["top5"] == r["top5"]


def test_the_config_is_the_released_test_protocol_and_rejects_misuse():
    cfg = load_config(CONFIG, [], "paper")
    (ev,) = cfg.downstream
    assert (ev.protocol, ev.segments, ev.spatial_crops, ev.model) == ("test", 10, 3, "m_bert")
    assert not cfg.pretrain.enabled and cfg.pretrain.init_checkpoint
    with pytest.raises(ConfigError, match="pretrain.enabled: false"):
        load_config(CONFIG, ["pretrain.enabled=true"], "paper")
    with pytest.raises(ConfigError, match="model: m_bert"):
        load_config(CONFIG, ["downstream=[{name: x, task: kinetics_sounds, protocol: test, model: v_cnn}]"], "paper")


def test_a_checkpoint_without_heads_or_with_other_classes_is_a_clear_error(tmp_path):
    from experiments.downstream import load_heads

    conv = torch.load(_convert(tmp_path), weights_only=True)
    dm = build_from(conv, torch.float32)
    with pytest.raises(ValueError, match="has none"):
        load_heads(dm, None, 7, "x.pt")
    with pytest.raises(ValueError, match="predict 7 classes, the task has 8"):
        load_heads(dm, conv["heads"], 8, "x.pt")
