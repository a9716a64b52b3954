"""Restricted- and original-domain metrics, registered by name in ``hf_nft.registry.METRICS``.

A metric scores a model's outputs over a list of batches. ``higher_is_better`` tells which way is good
for the model's user: an attacker wants a restricted-domain accuracy high (so it maximises it) and a
restricted-domain loss low. Other modalities (e.g. a diffusion model's denoising error) add a metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from hf_nft.registry import METRICS

Outputs = tuple[torch.Tensor, dict[str, Any]]


class Metric(ABC):
    """A score over ``(logits, batch)`` pairs; ``higher_is_better`` gives its direction."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    @abstractmethod
    def __call__(self, outputs: Iterable[Outputs]) -> float:
        """The score over all pairs."""

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` in this metric's direction."""
        return a > b if self.higher_is_better else a < b


def get_metric(metric: str | Metric) -> Metric:
    """A metric instance from its registered name (or the instance itself)."""
    return metric if isinstance(metric, Metric) else METRICS.get(metric)()


class _PerExampleMean(Metric):
    """Mean over examples of a per-example value."""

    per_example: ClassVar[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

    def __call__(self, outputs: Iterable[Outputs]) -> float:
        total, count = 0.0, 0
        for logits, batch in outputs:
            labels = batch["labels"].to(logits.device)
            total += float(type(self).per_example(logits.float(), labels).sum())
            count += labels.numel()
        return total / count


@METRICS.register("accuracy")
class Accuracy(_PerExampleMean):
    """Top-1 accuracy."""

    name = "accuracy"
    higher_is_better = True
    per_example = staticmethod(lambda logits, labels: (logits.argmax(-1) == labels).float())


@METRICS.register("cross_entropy")
class CrossEntropy(_PerExampleMean):
    """Mean cross-entropy (nats)."""

    name = "cross_entropy"
    higher_is_better = False
    per_example = staticmethod(lambda logits, labels: F.cross_entropy(logits, labels, reduction="none"))
