"""Non-fine-tunable losses for classifiers: low when the model is useless on the restricted domain."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def inverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SOPHON's inverse cross-entropy ``-log(1 - p_y)``, averaged over the batch.

    Computed stably as ``-logsumexp_{j != y} log p_j``; it is bounded below by 0 and drives the probability
    of the true class to 0 (unlike negated cross-entropy, which is unbounded).
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    true_class = F.one_hot(labels.long(), num_classes=logits.shape[-1]).bool()
    log_not_true = torch.logsumexp(log_probs.masked_fill(true_class, float("-inf")), dim=-1)
    return -log_not_true.mean()


def kl_uniform(logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(U || p)`` with ``U`` uniform over the model's actual number of classes, averaged over the batch.

    Zero exactly when the model outputs chance-level probabilities (denial of service). ``labels`` is
    accepted for a uniform signature and ignored.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    num_classes = logits.shape[-1]
    return (-math.log(num_classes) - log_probs.mean(dim=-1)).mean()


NFT_LOSS_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "inverse_ce": inverse_cross_entropy,
    "kl_uniform": kl_uniform,
}
