"""Negative sampling for masked embedding prediction (MEP; the paper's RQ4 ablation).

Candidates are the B*S segment embeddings of the batch, of the same modality as the positive.
* current_sequence: other segments of the same clip (only hard negatives; poster);
* current_minibatch: any segment of the batch but the positive, uniformly (many easy ones; poster);
* cans_similar: content-aware, P(j) proportional to exp(cos(x_t, x_j) / temperature), excluding the
  positive and near-duplicates with cos > sim_cap (ours: the paper's exact formula is not public);
* cans_dissimilar: the mirror image, exp(-cos / temperature), same exclusions.
Similarities use the detached CNN embeddings of the CNNs being trained (the caller detaches).

Draws use torch.multinomial on the [P, B*S] probability matrix, without replacement. A row with fewer
than `num` allowed candidates (e.g. current_sequence with S-1 < num) takes each of them once and fills
the rest with replacement. Degenerate rows whose allowed set is empty (current_sequence with S = 1,
or every candidate above sim_cap) fall back to uniform over all non-positive candidates, so the
positive is never drawn; a batch with a single segment (B*S = 1) has no negatives and is an error.
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
    """[P, B*S] sampling distribution over candidates for each positive (rows sum to 1, 0 on the positive)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown negative sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    b, s, _ = emb.shape
    n = b * s
    if n < 2:
        raise ValueError("negative sampling needs at least two segments in the batch (B*S >= 2)")
    pos = flat_positions(positions, s)
    cols = torch.arange(n, device=emb.device)
    not_pos = cols[None, :] != pos[:, None]  # [P, N]
    if sampler == "current_minibatch":
        return not_pos.float() / (n - 1)
    if sampler == "current_sequence":
        allowed = not_pos & (cols[None, :] // s == positions[:, :1])
        allowed = torch.where(allowed.any(1, keepdim=True), allowed, not_pos)  # S = 1 -> uniform fallback
        return allowed.float() / allowed.sum(1, keepdim=True)
    flat = F.normalize(emb.reshape(n, -1).detach().float(), dim=-1)
    cos = flat[pos] @ flat.T  # [P, N]
    allowed = not_pos & (cos <= sim_cap)
    has_any = allowed.any(1, keepdim=True)
    sign = 1.0 if sampler == "cans_similar" else -1.0
    # -inf removes the excluded candidates exactly (rows with none left are replaced just below)
    logits = (sign * cos / temperature).masked_fill(~(allowed | ~has_any), float("-inf"))
    uniform = not_pos.float() / (n - 1)
    return torch.where(has_any, torch.softmax(logits, dim=1), uniform)  # all excluded -> uniform fallback


def draw(probs: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[P, num] draws from each row of `probs` [P, N]: without replacement while a row has enough
    non-zero entries, then with replacement for the remainder; a zero-probability entry is never drawn."""
    available = (probs > 0).sum(1, keepdim=True)  # [P, 1]
    k = min(num, probs.shape[1])
    # Rows short of k candidates get a vanishing weight on their excluded entries so that the
    # no-replacement draw is well defined; such draws rank after every real candidate and are
    # replaced below by with-replacement draws from the real distribution.
    safe = torch.where(available >= k, probs, probs + 1e-30 * (probs == 0))
    picks = torch.multinomial(safe, k, replacement=False, generator=generator)
    if k < num:
        picks = torch.cat([picks, picks[:, :1].expand(-1, num - k)], dim=1)
    rank = torch.arange(num, device=probs.device)[None, :]
    valid = (rank < available.clamp_max(k)) & (probs.gather(1, picks) > 0)
    fill = torch.multinomial(probs, num, replacement=True, generator=generator)
    return torch.where(valid, picks, fill)


def sample_negatives(emb: torch.Tensor, positions: torch.Tensor, num: int, sampler: str,
                     temperature: float = 0.1, sim_cap: float = 0.99,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """emb [B,S,D] detached embeddings, positions [P,2] (b, t) of the positives ->
    [P, num] flat indices into B*S; never the positive itself."""
    if num < 1:
        raise ValueError(f"negatives.num must be >= 1, got {num}")
    return draw(candidate_probs(emb, positions, sampler, temperature, sim_cap), num, generator)


def clip_negatives(positions: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[P,2] (b, t) -> [P, S-1] flat indices of every other segment of the same clip: the fixed,
    sampler-independent candidate set of the held-out MEP accuracy (chance 1/S; ours)."""
    t = torch.arange(seq_len, device=positions.device)
    others = t[None].expand(positions.shape[0], -1)
    keep = others != positions[:, 1:2]
    others = others[keep].view(positions.shape[0], seq_len - 1)
    return positions[:, :1] * seq_len + others


def batch_negatives(positions: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[P,2] (b, t) -> [P, P - n] flat indices of the other clips' positives, n positives per clip (every
    clip the same count, as mask_positions gives): the candidate set of the issue's first MEP measurement
    (16 targets per batch of 16 clips, chance 1/16). A diagnostic only: the clip's visible segments give
    away its per-clip component, so copying their mean already ranks the positive first often (ours)."""
    clips = positions[:, 0]
    other = clips[None, :] != clips[:, None]
    p = positions.shape[0]
    n_other = int(other[0].sum()) if p else 0
    if p and not bool((other.sum(1) == n_other).all()):
        raise ValueError("batch_negatives needs the same number of positives in every clip")
    return flat_positions(positions, seq_len)[None].expand(p, -1)[other].view(p, n_other)
