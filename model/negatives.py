"""Negative sampling for masked embedding prediction (the paper's RQ4 ablation).

Candidates are all B*S segment embeddings of the batch (same modality as the positive). Samplers:
* current_sequence: other segments of the same clip (hard negatives only; poster);
* current_minibatch: any segment of the batch but the positive, uniformly (many easy ones; poster);
* cans_similar: content-aware, P(j) = softmax_j(cos(x_t, x_j) / temperature) (ours: the paper's
  exact formula is not public), excluding the positive and near-duplicates with cos > sim_cap;
* cans_dissimilar: the mirror image, softmax(-cos / temperature), same exclusions.
Similarities use detached CNN embeddings from the CNNs being trained. Sampling is without
replacement via Gumbel top-k (no host sync); rows with fewer than `num` candidates fill the rest by
sampling with replacement. Rows where every candidate is excluded fall back to uniform over all
non-positive candidates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SAMPLERS = ("current_sequence", "current_minibatch", "cans_similar", "cans_dissimilar")


def flat_positions(positions: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[P,2] (b, t) -> [P] index into the flattened B*S candidates."""
    return positions[:, 0] * seq_len + positions[:, 1]


def candidate_probs(emb: torch.Tensor, positions: torch.Tensor, sampler: str,
                    temperature: float = 0.1, sim_cap: float = 0.99) -> torch.Tensor:
    """[P, B*S] sampling distribution over candidates for each positive (rows sum to 1)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown negative sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    b, s, _ = emb.shape
    n = b * s
    pos = flat_positions(positions, s)
    cols = torch.arange(n, device=emb.device)
    not_pos = cols[None, :] != pos[:, None]  # [P, N]
    if sampler == "current_sequence":
        allowed = not_pos & (cols[None, :] // s == positions[:, :1])
        return allowed.float() / allowed.sum(1, keepdim=True).clamp_min(1)
    if sampler == "current_minibatch":
        return not_pos.float() / not_pos.sum(1, keepdim=True)
    flat = F.normalize(emb.reshape(n, -1).detach().float(), dim=-1)
    cos = flat[pos] @ flat.T  # [P, N]
    allowed = not_pos & (cos <= sim_cap)
    allowed = torch.where(allowed.any(1, keepdim=True), allowed, not_pos)  # all excluded -> uniform fallback
    sign = 1.0 if sampler == "cans_similar" else -1.0
    logits = (sign * cos / temperature).masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=1)


def sample_negatives(emb: torch.Tensor, positions: torch.Tensor, num: int, sampler: str,
                     temperature: float = 0.1, sim_cap: float = 0.99,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """[P, num] flat indices of negatives for each positive; never the positive itself."""
    probs = candidate_probs(emb, positions, sampler, temperature, sim_cap)
    u = torch.rand(probs.shape, device=probs.device, generator=generator).clamp_(1e-20, 1.0)
    gumbel = probs.log() - (-u.log()).log()  # -inf where prob == 0
    k = min(num, probs.shape[1])
    score, picks = gumbel.topk(k, dim=1)
    if k < num:
        picks = torch.cat([picks, picks[:, :1].expand(-1, num - k)], dim=1)
        score = torch.cat([score, torch.full_like(score[:, :1], float("-inf")).expand(-1, num - k)], dim=1)
    fill = torch.multinomial(probs, num, replacement=True, generator=generator)
    return torch.where(torch.isfinite(score), picks, fill)
