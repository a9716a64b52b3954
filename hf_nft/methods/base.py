"""The interface every protection method implements, so NFTTrainer can run any of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hf_nft.data import num_labels

if TYPE_CHECKING:
    from hf_nft.trainer import NFTTrainer


class ProtectionMethod(ABC):
    """A protection objective plugged into :class:`~hf_nft.NFTTrainer`.

    The trainer calls :meth:`validate` once before training starts (bad input fails before any work) and
    :meth:`training_loss` for every optimisation step; the returned loss goes through the Trainer's normal
    backward, gradient clipping, optimizer and scheduler.
    """

    name: str = "base"

    def __init__(self, trainer: NFTTrainer) -> None:
        self.trainer = trainer
        self.args = trainer.args

    @abstractmethod
    def validate(self) -> None:
        """Check model and data before training; raise ``ValueError`` naming the problem."""

    @abstractmethod
    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss for one optimisation step on original-domain ``inputs``, and metrics to log."""

    def settings(self) -> dict[str, Any]:
        """The method's settings, as recorded in protection metadata and model cards."""
        return {"method": self.name}


def check_labelled_dataset(dataset: Any, role: str, model_labels: int) -> None:
    """Raise if ``dataset`` is missing, empty, unlabelled, or has more classes than the model's head."""
    if dataset is None:
        raise ValueError(f"NFTTrainer needs a {role}; got None.")
    if len(dataset) == 0:
        raise ValueError(f"The {role} is empty.")
    columns = getattr(dataset, "column_names", None)
    if columns is not None and "labels" not in columns:
        raise ValueError(f"The {role} has no 'labels' column (columns: {columns}).")
    if columns is not None and num_labels(dataset) > model_labels:
        raise ValueError(
            f"The {role} has {num_labels(dataset)} classes but the model's head has {model_labels} labels "
            "(label spaces do not match)."
        )
