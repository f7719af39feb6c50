"""experiments.probes.objectives: pretraining on clips decoded once (smoke corpus, seconds on CPU)."""
from __future__ import annotations

import pytest
import torch

from experiments.probes import objectives


pytestmark = pytest.mark.usefixtures("restore_threads")  # the CLIs set the thread count


def test_probe_trains_and_prints_heldout_metrics(capsys):
    assert objectives.main(["--profile", "smoke", "--steps", "4", "--clips", "16", "--heldout-clips", "16",
                            "--log-every", "2", "--threads", "1", "model.embedding_norm=batch"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("decoded 16 + 16 clips")
    assert [ln.split(" (")[0] for ln in lines if ln.startswith("step ")] == ["step 2/4", "step 4/4"]
    cpp = float(lines[-2].split()[3])
    mep = float(lines[-1].split()[3])
    assert lines[-2].startswith("heldout CPP accuracy") and 0.0 <= cpp <= 1.0
    assert lines[-1].startswith("heldout MEP top-1") and 0.0 <= mep <= 1.0 and "(chance 0.125)" in lines[-1]


def test_frozen_cnns_stay_at_their_initialisation(monkeypatch):
    """--freeze-cnns: weights and BN statistics of the CNNs after training are those at init; trained,
    they move."""
    from data.synthetic import ensure_synthetic
    from common import paths
    from experiments.config import load_config
    from model.build import build_model

    cfg = load_config(objectives.DEFAULT_CONFIG, [], "smoke")
    root = paths.resolve(cfg.data.root)
    ensure_synthetic(root, cfg.data, seed=0)
    data = {k: objectives.decode_once(cfg, root / d, 16, 0) for k, d in (("train", "pretrain"), ("heldout", "pretrain_val"))}
    torch.manual_seed(0)  # train() builds its model right after seeding with its seed
    init = build_model(cfg.model).visual_cnn.state_dict()
    after = []
    real = objectives.heldout

    def spy(module, *a, **k):  # the held-out pass after the last step sees the trained CNN
        after.append({n: v.clone() for n, v in module.model.visual_cnn.state_dict().items()})
        return real(module, *a, **k)

    monkeypatch.setattr(objectives, "heldout", spy)
    for freeze in (True, False):
        objectives.train(cfg, data, steps=2, freeze=freeze, log_every=2, seed=0, log=lambda s: None)
    frozen, trained = after
    assert all(torch.equal(frozen[k], init[k]) for k in init)
    assert any(not torch.equal(trained[k], init[k]) for k in init if init[k].is_floating_point())


def test_init_checkpoint_is_loaded_as_in_a_run(tmp_path, monkeypatch):
    """pretrain.init_checkpoint: the probe starts from the file's weights (a run's pretrained.pt, or CNNs
    trained elsewhere), so --freeze-cnns keeps exactly those."""
    from data.synthetic import ensure_synthetic
    from common import paths
    from experiments.config import load_config
    from model.build import build_model

    ck = tmp_path / "init.pt"
    cfg = load_config(objectives.DEFAULT_CONFIG, [f"pretrain.init_checkpoint={ck}"], "smoke")
    torch.manual_seed(123)
    init = build_model(cfg.model).state_dict()
    torch.save({"model": init}, ck)
    root = paths.resolve(cfg.data.root)
    ensure_synthetic(root, cfg.data, seed=0)
    data = {k: objectives.decode_once(cfg, root / d, 16, 0) for k, d in (("train", "pretrain"), ("heldout", "pretrain_val"))}
    seen = []
    real = objectives.heldout
    monkeypatch.setattr(objectives, "heldout", lambda m, *a, **k: (seen.append(m.model.visual_cnn.state_dict()),
                                                                   real(m, *a, **k))[1])
    objectives.train(cfg, data, steps=1, freeze=True, log_every=1, seed=0, log=lambda s: None)
    assert all(torch.equal(v, init[f"visual_cnn.{k}"]) for k, v in seen[0].items())


def test_bad_arguments_fail_before_decoding(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        objectives.main(["--profile", "smoke", "--root", str(tmp_path)])
    assert e.value.code == 2 and "pretrain" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        objectives.main(["--profile", "smoke", "--steps", "0"])
