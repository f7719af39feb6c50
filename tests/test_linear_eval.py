"""Linear evaluation's feature standardisation (ours): train-split z-scores, applied to every split."""
from __future__ import annotations

import torch

from experiments.downstream import standardize_features


def test_train_statistics_are_applied_to_every_split():
    g = torch.Generator().manual_seed(0)
    train = {"cnn_visual": 5 + 3 * torch.randn(40, 8, 16, generator=g), "seq_audio": torch.randn(40, 9, 4, generator=g)}
    test = {"cnn_visual": 5 + 3 * torch.randn(20, 2, 8, 16, generator=g), "seq_audio": torch.randn(20, 2, 9, 4, generator=g)}
    tr, te = standardize_features(train, test)
    for k in train:
        flat = tr[k].flatten(0, -2)
        assert torch.allclose(flat.mean(0), torch.zeros(flat.shape[1]), atol=1e-5)
        assert torch.allclose(flat.std(0), torch.ones(flat.shape[1]), atol=1e-4)
        mu, sd = train[k].flatten(0, -2).mean(0), train[k].flatten(0, -2).std(0)
        assert torch.allclose(te[k], (test[k] - mu) / (sd + 1e-6), atol=1e-5)  # train stats, not test's own
        assert te[k].shape == test[k].shape


def test_feature_scale_no_longer_matters():
    g = torch.Generator().manual_seed(1)
    train, val = {"f": torch.randn(30, 6, generator=g)}, {"f": torch.randn(10, 6, generator=g)}
    a = standardize_features(train, val)
    b = standardize_features({"f": 100 * train["f"] + 7}, {"f": 100 * val["f"] + 7})
    for x, y in zip(a, b):
        assert torch.allclose(x["f"], y["f"], atol=1e-4)
