"""The best-scoring weights of a run (`train --save-best TARGET`), kept besides the newest checkpoints.

    <run>/best.safetensors   the weights of the evaluation with the highest mIoU on TARGET (the first on a tie)
    <run>/best.json          {"target", "cache", "iteration", "miou", "weights"}

Every evaluation during training and the final one compete. The best so far is part of each
checkpoint's resume state, so an interrupted and resumed run ends with the same record and bytes.
"""

from __future__ import annotations

from pathlib import Path

from diffseg.core import location
from diffseg.core.errors import DiffsegError
from diffseg.stages.runs.files import write_json
from diffseg.stages.runs.scoring import Target
from diffseg.stages.train.checkpoint import save_weights

BEST_WEIGHTS = "best.safetensors"
BEST = "best.json"


def pick_target(save_best: str | None, targets: list[Target]) -> Target | None:
    """The evaluation target `--save-best` names (its name in the tables or its cache); None when not asked."""
    if save_best is None:
        return None
    for t in targets:
        if save_best == t.name or location.same(save_best, t.path):
            return t
    have = ", ".join(t.name for t in targets) or "none: give --eval-cache"
    raise DiffsegError(f"--save-best {save_best}: not an evaluation target of this run (targets: {have})")


def target_miou(report: dict, target: Target) -> float | None:
    """The mIoU of one target in a scoring report (one target its row, several {"targets": [...]})."""
    (row,) = [r for r in report.get("targets", [report]) if r["target"] == target.name]
    return row["miou"]


class Best:
    """The best evaluation so far on one target: its record (resume state, best.json) and weights."""

    def __init__(self, run: Path, target: Target, record: dict | None):
        self.run, self.target, self.record = Path(run), target, record

    def update(self, iteration: int, report: dict, state_dict: dict) -> bool:
        """Keep these weights when their mIoU beats the best so far; True when they were kept."""
        miou = target_miou(report, self.target)
        if miou is None or (self.record is not None and miou <= self.record["miou"]):
            return False
        save_weights(state_dict, self.run / BEST_WEIGHTS)
        self.record = {
            "target": self.target.name,
            "cache": self.target.path,
            "iteration": iteration,
            "miou": miou,
            "weights": BEST_WEIGHTS,
        }
        write_json(self.run / BEST, self.record)
        return True
