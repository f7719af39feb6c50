"""MEP negative samplers: supports, exclusions, fallbacks and empirical distributions over many draws.
Many draws come from one vectorised call: the same positive repeated over many rows."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.negatives import SAMPLERS, candidate_probs, draw, flat_positions, sample_negatives

DRAWS = 20000


def graded_embeddings() -> torch.Tensor:
    """[2,6,8]: candidate j drifts further from segment (0,0) as j grows (graded similarity)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, generator=g)
    emb = base + torch.linspace(0, 3, 12)[:, None] * torch.randn(12, 8, generator=g)
    return emb.view(2, 6, 8)


def repeated(pos: list[int], n: int = DRAWS) -> torch.Tensor:
    return torch.tensor([pos]).expand(n, 2)


def frequencies(emb, pos, sampler, num=1, **kw) -> torch.Tensor:
    idx = sample_negatives(emb, repeated(pos), num, sampler, generator=torch.Generator().manual_seed(1), **kw)
    return torch.bincount(idx.flatten(), minlength=emb.shape[0] * emb.shape[1]).float() / idx.numel()


def similarity_order(emb) -> torch.Tensor:
    flat = F.normalize(emb.reshape(-1, emb.shape[-1]), dim=-1)
    return (flat[0] @ flat.T)[1:].argsort(descending=True) + 1  # candidates, most similar first


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_rows_are_distributions_and_never_the_positive(sampler):
    emb = torch.randn(3, 5, 4)
    pos = torch.tensor([[0, 0], [1, 3], [2, 4]])
    p = candidate_probs(emb, pos, sampler, 0.1, 0.99)
    assert p.shape == (3, 15) and torch.allclose(p.sum(1), torch.ones(3))
    assert torch.all(p.gather(1, flat_positions(pos, 5)[:, None]) == 0)
    idx = sample_negatives(emb, pos.repeat(2000, 1), 6, sampler, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (6000, 6) and idx.dtype == torch.long
    assert not (idx == flat_positions(pos, 5).repeat(2000)[:, None]).any()


def test_cans_similar_favours_similar_candidates_and_dissimilar_the_reverse():
    emb = graded_embeddings()
    order = similarity_order(emb)
    p_sim = candidate_probs(emb, torch.tensor([[0, 0]]), "cans_similar", 0.2, 1.1)[0]
    p_dis = candidate_probs(emb, torch.tensor([[0, 0]]), "cans_dissimilar", 0.2, 1.1)[0]
    assert torch.all(p_sim[order][:-1] >= p_sim[order][1:])  # monotone in similarity
    assert torch.all(p_dis[order][:-1] <= p_dis[order][1:])
    # one draw per row: empirical frequencies follow the distribution
    f_sim = frequencies(emb, [0, 0], "cans_similar", temperature=0.2, sim_cap=1.1)
    f_dis = frequencies(emb, [0, 0], "cans_dissimilar", temperature=0.2, sim_cap=1.1)
    assert f_sim[0] == 0 and f_dis[0] == 0
    assert torch.allclose(f_sim, p_sim, atol=0.015) and torch.allclose(f_dis, p_dis, atol=0.015)
    # several draws without replacement: inclusion frequency still ordered by similarity (thirds)
    f3 = frequencies(emb, [0, 0], "cans_similar", num=3, temperature=0.2, sim_cap=1.1)[order]
    d3 = frequencies(emb, [0, 0], "cans_dissimilar", num=3, temperature=0.2, sim_cap=1.1)[order]
    thirds = lambda f: [f[i:i + 4].mean().item() for i in (0, 4, 8)][:3]  # noqa: E731
    assert thirds(f3) == sorted(thirds(f3), reverse=True) and thirds(d3) == sorted(thirds(d3))


def test_sim_cap_excludes_near_duplicates():
    emb = torch.randn(1, 5, 8)
    emb[0, 1] = 2.0 * emb[0, 0]  # cosine 1 with the positive
    p = candidate_probs(emb, torch.tensor([[0, 0]]), "cans_similar", 0.1, sim_cap=0.99)[0]
    assert p[0] == 0 and p[1] == 0 and p.sum().item() == pytest.approx(1.0)
    f = frequencies(emb, [0, 0], "cans_similar", num=3, temperature=0.1, sim_cap=0.99)
    assert f[0] == 0 and f[1] == 0


def test_everything_excluded_falls_back_to_uniform():
    emb = torch.randn(2, 3, 4)
    for sampler in ("cans_similar", "cans_dissimilar"):
        p = candidate_probs(emb, torch.tensor([[1, 1]]), sampler, 0.1, sim_cap=-2.0)[0]
        assert torch.allclose(p, torch.tensor([0.2, 0.2, 0.2, 0.2, 0.0, 0.2]))
    # current_sequence with one segment per clip: uniform over the other clips
    p = candidate_probs(torch.randn(4, 1, 4), torch.tensor([[2, 0]]), "current_sequence")[0]
    assert torch.allclose(p, torch.tensor([1 / 3, 1 / 3, 0.0, 1 / 3]))
    with pytest.raises(ValueError, match="two segments"):
        candidate_probs(torch.randn(1, 1, 4), torch.tensor([[0, 0]]), "current_minibatch")


def test_current_sequence_stays_in_the_clip():
    emb = torch.randn(3, 5, 4)
    idx = sample_negatives(emb, repeated([1, 2], 5000), 3, "current_sequence", generator=torch.Generator().manual_seed(0))
    assert torch.all(idx // 5 == 1) and not (idx == 7).any()
    f = torch.bincount(idx.flatten(), minlength=15).float() / idx.numel()
    assert torch.allclose(f[[5, 6, 8, 9]], torch.full((4,), 0.25), atol=0.02)
    # without replacement within a row
    assert all(len(set(r)) == 3 for r in idx[:200].tolist())


def test_short_rows_use_every_candidate_then_fill_with_replacement():
    emb = torch.randn(2, 4, 4)  # 3 same-clip candidates, 6 asked for
    idx = sample_negatives(emb, repeated([0, 1], 500), 6, "current_sequence", generator=torch.Generator().manual_seed(0))
    assert all(set(r[:3]) == {0, 2, 3} and set(r) <= {0, 2, 3} for r in idx.tolist())
    big = sample_negatives(emb, repeated([0, 1], 50), 20, "current_minibatch", generator=torch.Generator().manual_seed(0))
    assert all(set(r[:7]) == {0, 2, 3, 4, 5, 6, 7} and 1 not in r for r in big.tolist())  # num > B*S


def test_current_minibatch_is_uniform():
    emb = torch.randn(3, 4, 4)
    f = frequencies(emb, [2, 1], "current_minibatch")
    assert f[9] == 0
    assert torch.allclose(f[f > 0], torch.full((11,), 1 / 11), atol=0.01)
    g = torch.Generator().manual_seed(0)
    no_rep = sample_negatives(emb, repeated([2, 1], 100), 11, "current_minibatch", generator=g)
    assert all(sorted(r) == [i for i in range(12) if i != 9] for r in no_rep.tolist())


def test_generator_makes_draws_reproducible_and_bad_inputs_fail():
    emb, pos = torch.randn(2, 6, 4), torch.tensor([[0, 1], [1, 5]])
    a = sample_negatives(emb, pos, 4, "cans_similar", generator=torch.Generator().manual_seed(5))
    b = sample_negatives(emb, pos, 4, "cans_similar", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown negative sampler"):
        sample_negatives(emb, pos, 4, "random")
    with pytest.raises(ValueError, match="num"):
        sample_negatives(emb, pos, 0, "current_minibatch")


def test_draw_never_returns_zero_probability_entries():
    probs = torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]]).repeat(500, 1)
    idx = draw(probs, 3, torch.Generator().manual_seed(0))
    assert not torch.isin(idx[::2], torch.tensor([0, 3])).any()
    assert all(len(set(r)) == 3 for r in idx[1::2].tolist())


def test_clip_negatives_are_the_other_segments_of_the_same_clip():
    """The held-out MEP candidate set: every other segment of the masked segment's clip, in order."""
    from model.negatives import clip_negatives

    b, s = 3, 5
    pos = torch.tensor([[0, 0], [1, 2], [2, 4], [1, 2]])
    neg = clip_negatives(pos, s)
    assert neg.shape == (4, s - 1) and neg.dtype == torch.long
    for row, (bi, t) in zip(neg.tolist(), pos.tolist()):
        assert row == [bi * s + j for j in range(s) if j != t]
    flat = flat_positions(pos, s)
    assert not (neg == flat[:, None]).any()  # never the positive
    assert ((neg // s) == pos[:, :1]).all() and neg.max() < b * s  # same clip only
    assert clip_negatives(pos[:0], s).shape == (0, s - 1)


def test_batch_negatives_are_the_other_clips_positives():
    """The diagnostic held-out MEP form: each positive against the positives of every other clip
    (chance 1/B with one per clip), never its own clip's; unequal counts per clip are refused."""
    from model.negatives import batch_negatives

    s = 6
    pos = torch.tensor([[0, 1], [0, 4], [1, 0], [1, 5], [2, 2], [2, 3]])  # 2 per clip
    neg = batch_negatives(pos, s)
    flat = flat_positions(pos, s).tolist()
    assert neg.shape == (6, 4)
    for row, (bi, _) in zip(neg.tolist(), pos.tolist()):
        assert row == [f for f, (bj, _) in zip(flat, pos.tolist()) if bj != bi]
    assert batch_negatives(pos[:0], s).shape == (0, 0)
    with pytest.raises(ValueError, match="same number of positives"):
        batch_negatives(pos[:5], s)
