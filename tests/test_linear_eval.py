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


def test_first_per_class_keeps_the_first_k_of_each_class_in_order():
    from experiments.downstream import first_per_class

    y = torch.tensor([2, 0, 2, 1, 0, 2, 0, 1, 3])
    assert first_per_class(y, 1).tolist() == [0, 1, 3, 8]
    assert first_per_class(y, 2).tolist() == [0, 1, 2, 3, 4, 7, 8]
    assert first_per_class(y, 10).tolist() == list(range(len(y)))  # fewer than k: all of that class
    keep = first_per_class(y, 2)
    assert keep.dtype == torch.long and torch.bincount(y[keep]).tolist() == [2, 2, 2, 1]


def test_train_per_class_is_validated():
    import pytest

    from experiments.config.schema import EvalConfig

    assert EvalConfig(train_per_class=4).train_per_class == 4
    with pytest.raises(ValueError, match="train_per_class must be >= 0"):
        EvalConfig(train_per_class=-1)
    with pytest.raises(ValueError, match="protocol: linear"):
        EvalConfig(train_per_class=4, protocol="finetune")
    with pytest.raises(ValueError, match="single-label"):
        EvalConfig(train_per_class=4, multilabel=True)
    assert EvalConfig(protocol="finetune").train_per_class == 0  # 0 = all, any protocol
