"""experiments.probes.segments: what CNN segment embeddings encode, scored against the generator's
replayed scene draws (smoke corpus, seconds on CPU)."""
from __future__ import annotations

import json

import pytest
import torch

from common import paths
from data.pipeline import make_pretrain_loader
from data.synthetic.generate import clip_scene
from data.synthetic.spec import SyntheticSpec
from experiments.config import load_config
from experiments.probes import segments

CONFIG = "experiments/rq1_end_to_end/configs/end_to_end.yaml"


pytestmark = pytest.mark.usefixtures("restore_threads")  # the CLIs set the thread count


def test_replayed_scenes_are_the_stored_clips():
    """The replay must give the events the generator stored with each clip (types and times)."""
    cfg = load_config(CONFIG, [], "smoke")
    root = paths.resolve(cfg.data.root)
    from data.synthetic import ensure_synthetic

    ensure_synthetic(root, cfg.data, seed=0)
    meta = json.loads((root / "synthetic.json").read_text())
    spec = SyntheticSpec.from_json(meta["spec"])
    batch = next(iter(make_pretrain_loader(cfg.data, root / "pretrain_val", batch_size=4, batches_per_epoch=1)))
    import tarfile

    stored = {}
    for tar in sorted((root / "pretrain_val").glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    d = json.loads(t.extractfile(m).read())
                    stored[d["id"]] = d["events"]
    for key in batch["key"]:
        split, index = key.rsplit("_", 2)[-2], int(key.rsplit("_", 1)[1])
        scene, _ = clip_scene("pretrain", split, index, None, meta["seed"], meta["render"], spec)
        got = [[e.etype, e.vis, e.aud, round(e.t0, 3), round(e.t1, 3)] for e in scene.events]
        assert got == stored[key]


def test_probe_rows_are_sane(tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert segments.main(["--profile", "smoke", "--train-clips", "16", "--supervised-steps", "2", "--threads", "1",
                          "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["features"] for r in rows][:3] == ["hand-crafted", "random, standard init",
                                                 "random, released init (zero_init_final_bn)"]
    assert rows[-1]["features"].startswith("supervised")
    for r in rows:
        for m in ("visual", "audio"):
            assert 0.0 <= r[f"{m}_type"] <= 1.0
            assert 0.0 <= r[f"{m}_clip_share"] <= 1.0 + 1e-6
            assert 0.0 <= r[f"{m}_type_share"] <= 1.0 + 1e-6
    assert "| hand-crafted |" in capsys.readouterr().out


def test_type_probe_separates_separable_segments():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 8, (400,), generator=g)
    x = torch.nn.functional.one_hot(y, 8).float() * 3 + torch.randn(400, 8, generator=g)
    assert segments.type_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.9
    noise = torch.randn(400, 8, generator=g)
    assert segments.type_accuracy(noise[:300], y[:300], noise[300:], y[300:]) < 0.35
    # 3 x one-hot + unit noise: per dimension 9 x 7/64 type variance against 1 (about half); noise: ~0
    assert segments.type_share(x.view(40, 10, 8), y.view(40, 10)) > 0.4
    assert segments.type_share(noise.view(40, 10, 8), y.view(40, 10)) < 0.05
    r2 = segments.ridge_r2(x[:300], x[:300, :2] * 2, x[300:], x[300:, :2] * 2)
    assert min(r2) > 0.99


def test_check_compares_within_tolerance():
    want = [{"features": "random", "visual_type": 0.5, "visual_clip_share": 0.7}, {"features": "only theirs", "visual_type": 0.1}]
    tol = segments.tolerance("visual_type", 0.5, 2048)
    assert tol == pytest.approx(2 * (0.25 / 2048) ** 0.5 + 0.001)
    ok = [{"features": "random", "visual_type": 0.5 + tol * 0.9, "visual_clip_share": 0.72}, {"features": "only ours", "visual_type": 0.9}]
    assert segments.check_rows(ok, want, 2048) == ([], 2)
    bad = [{"features": "random", "visual_type": 0.5 + tol * 1.1, "visual_clip_share": 0.65}]
    problems, n = segments.check_rows(bad, want, 2048)
    assert n == 2 and len(problems) == 2 and problems[0].startswith("random: visual_type =")


def test_root_that_is_not_a_corpus_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a synthetic corpus"):
        segments.main(["--profile", "smoke", "--root", str(tmp_path)])
