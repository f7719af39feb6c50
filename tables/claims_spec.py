"""The paper's claims as data, so adding or editing one never touches the code that judges them.

A claim compares run A with run B of one research question, seed by seed, on one downstream eval
(the key under `downstream` in metrics.json) and one metric (top1 / top5 / mAP, in %):
  kind "greater": A > B                        (A - B > 0)
  kind "within":  A within `margin` points of B (A - B > -margin: A is not worse by more than margin)
"""
from __future__ import annotations

from dataclasses import dataclass

WITHIN_MARGIN = 3.0  # points (percentage points of the metric)


@dataclass(frozen=True)
class ClaimSpec:
    claim: str
    rq: str
    run_a: str
    run_b: str
    eval: str
    metric: str = "top1"
    kind: str = "greater"  # greater | within
    margin: float = 0.0  # how far below B run A may fall (0 for "greater")
    eval_b: str | None = None  # run B's eval when it differs from run A's

    @property
    def eval_of_b(self) -> str:
        return self.eval_b or self.eval

    @property
    def threshold(self) -> float:
        """A - B must exceed this for the claim to hold."""
        return -self.margin

    @property
    def rule(self) -> str:
        if self.kind == "greater":
            return "A > B: reproduced if ci95_low > 0, contradicted if ci95_high < 0"
        t = self.threshold
        return (f"A within {self.margin:g} points of B: reproduced if ci95_low > {t:g}, "
                f"contradicted if ci95_high < {t:g}")


def _pretraining(task: str, eval_name: str, metric: str = "top1") -> ClaimSpec:
    return ClaimSpec(f"pretraining beats random init ({task})", "rq1_end_to_end", "end_to_end", "no_pretrain",
                     eval_name, metric)


CLAIMS: list[ClaimSpec] = [
    _pretraining("audio-visual binding task", "bind"),
    _pretraining("audio-visual binding task, 4 labels per class", "bind_4"),
    _pretraining("audio-visual task", "av"),
    _pretraining("visual task", "visual"),
    _pretraining("audio task", "audio"),
    _pretraining("temporal order task", "order", "mAP"),
    ClaimSpec("mid fusion > late fusion", "rq2_fusion", "mid", "late", "av"),
    ClaimSpec("mid fusion > early fusion", "rq2_fusion", "mid", "early", "av"),
    ClaimSpec("part sharing within 3 points of no sharing", "rq3_sharing", "part", "none", "av",
              kind="within", margin=WITHIN_MARGIN),
    ClaimSpec("cross-layer sharing within 3 points of no sharing", "rq3_sharing", "cross_layer", "none", "av",
              kind="within", margin=WITHIN_MARGIN),
    ClaimSpec("CANS-similar > current-minibatch negatives", "rq4_negatives", "cans_similar", "current_minibatch",
              "av"),
    ClaimSpec("CANS-similar > current-sequence negatives", "rq4_negatives", "cans_similar", "current_sequence",
              "av"),
]


def check(claims: list[ClaimSpec]) -> None:
    """Refuse a malformed claim list before anything is read (a typo must not become 'missing')."""
    for c in claims:
        if c.kind not in ("greater", "within"):
            raise ValueError(f"claim {c.claim!r}: kind must be 'greater' or 'within', got {c.kind!r}")
        if c.metric not in ("top1", "top5", "mAP"):
            raise ValueError(f"claim {c.claim!r}: metric must be top1/top5/mAP, got {c.metric!r}")
        if c.margin < 0 or (c.kind == "greater" and c.margin):
            raise ValueError(f"claim {c.claim!r}: margin must be >= 0, and 0 for kind 'greater'")
