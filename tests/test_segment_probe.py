"""experiments.probes.segments: what CNN segment embeddings encode, scored against the generator's
replayed scene draws (smoke corpus, seconds on CPU)."""
from __future__ import annotations

import json

import pytest
import torch

from data.pipeline import make_pretrain_loader
from data.synthetic.generate import clip_scene
from data.synthetic.spec import SyntheticSpec
from experiments import paths
from experiments.config import load_config
from experiments.probes import segments

CONFIG = "experiments/rq1_end_to_end/configs/end_to_end.yaml"


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


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
    assert "| hand-crafted |" in capsys.readouterr().out


def test_type_probe_separates_separable_segments():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 8, (400,), generator=g)
    x = torch.nn.functional.one_hot(y, 8).float() * 3 + torch.randn(400, 8, generator=g)
    assert segments.type_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.9
    noise = torch.randn(400, 8, generator=g)
    assert segments.type_accuracy(noise[:300], y[:300], noise[300:], y[300:]) < 0.35
    r2 = segments.ridge_r2(x[:300], x[:300, :2] * 2, x[300:], x[300:, :2] * 2)
    assert min(r2) > 0.99
