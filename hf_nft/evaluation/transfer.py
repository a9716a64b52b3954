"""Transfer metrics of a non-transferability protection: source and target accuracy before and after it.

- ``source_drop = source_before - source_after`` and ``target_drop = target_before - target_after`` (in accuracy
  points, positive = lower after).
- ``balance`` (hf_nft's own balanced score; the MAP paper's ST-D was not available to check its formula, so it
  is not reproduced under that name): the harmonic mean of the **target removal**
  ``(target_before - target_after) / (target_before - chance)`` (the share of above-chance target accuracy that
  was removed) and the **source retention** ``source_after / source_before``, both clipped to [0, 1]. It is 1
  when the target falls to chance and the source is untouched, and 0 when either fails completely, so neither
  drop can buy the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from datasets import Dataset
from torch import nn

from hf_nft.attacks.batches import collated
from hf_nft.attacks.runner import score_model
from hf_nft.data import num_labels
from hf_nft.evaluation.metrics import get_metric


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass
class TransferResult:
    """Source and target accuracy of a model before and after protection, and the chance level."""

    source_before: float
    source_after: float
    target_before: float
    target_after: float
    chance: float

    @property
    def source_drop(self) -> float:
        return self.source_before - self.source_after

    @property
    def target_drop(self) -> float:
        return self.target_before - self.target_after

    @property
    def balance(self) -> float:
        """Harmonic mean of target removal and source retention, in [0, 1] (higher is better)."""
        above_chance = self.target_before - self.chance
        removal = _clip(self.target_drop / above_chance) if above_chance > 0 else 0.0
        retention = _clip(self.source_after / self.source_before) if self.source_before > 0 else 0.0
        return 2 * removal * retention / (removal + retention) if removal + retention > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Every measured and derived figure (JSON-serialisable)."""
        return {**asdict(self), "source_drop": self.source_drop, "target_drop": self.target_drop,
                "balance": self.balance}


def measure_transfer(before: nn.Module, after: nn.Module, source_eval: Dataset, target_eval: Dataset) -> TransferResult:
    """Accuracy of ``before`` and ``after`` on both domains' evaluation sets (chance = 1 / number of classes)."""
    accuracy = get_metric("accuracy")
    source, target = collated(source_eval), collated(target_eval)
    return TransferResult(
        source_before=score_model(before, source, accuracy), source_after=score_model(after, source, accuracy),
        target_before=score_model(before, target, accuracy), target_after=score_model(after, target, accuracy),
        chance=1.0 / num_labels(target_eval),
    )


def transfer_table(results: dict[str, TransferResult]) -> str:
    """A plain-text table, one row per named result (e.g. per MAP setting)."""
    header = (f"{'setting':<18} {'source before':>13} {'source after':>12} {'target before':>13} "
              f"{'target after':>12} {'source drop':>11} {'target drop':>11} {'balance':>8}")
    rows = [
        f"{name:<18} {r.source_before:>13.3f} {r.source_after:>12.3f} {r.target_before:>13.3f} {r.target_after:>12.3f} "
        f"{r.source_drop:>+11.3f} {r.target_drop:>+11.3f} {r.balance:>8.3f}"
        for name, r in results.items()
    ]
    return "\n".join([header, *rows])
