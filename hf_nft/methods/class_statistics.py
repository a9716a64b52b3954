"""Per-class means of labelled feature rows, shared by the separability, erasure and pruning statistics."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class ClassMeans(NamedTuple):
    """The classes present in the labels: their mean rows, their sizes, and each row's class mean."""

    means: torch.Tensor
    counts: torch.Tensor
    row_means: torch.Tensor

    def within_scatter(self, features: torch.Tensor) -> torch.Tensor:
        """The within-class scatter matrix of ``features`` (the rows these means came from), per row."""
        centred = features - self.row_means
        return centred.T @ centred / features.shape[0]


def class_means(features: torch.Tensor, labels: torch.Tensor, classes: int) -> ClassMeans:
    """The means of ``features`` per class of ``labels`` (in ``features``' dtype), over the classes present."""
    onehot = F.one_hot(labels.long(), classes).to(features.dtype)
    counts = onehot.sum(0)
    present = counts > 0
    means = (onehot.T @ features)[present] / counts[present, None]
    return ClassMeans(means, counts[present], onehot[:, present] @ means)
