"""A collapse guard: roll back and stop if protection destroys the original task."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

logger = logging.get_logger(__name__)


@torch.no_grad()
def accuracy(model: torch.nn.Module, dataset: Any, batch_size: int = 256, collate_fn: Any = None) -> float:
    """Top-1 accuracy of a classifier on a labelled dataset (model mode restored afterwards)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn):
        labels = batch.pop("labels").to(device)
        logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
        correct += int((logits.argmax(-1) == labels).sum())
    model.train(was_training)
    return correct / len(dataset)


class OriginalTaskGuard(TrainerCallback):
    """Every ``every`` steps, measure original-domain accuracy; keep a snapshot of the last good weights, and
    if accuracy falls more than ``tolerance`` below its value at the start, restore that snapshot and stop."""

    def __init__(self, dataset: Any, every: int, tolerance: float, collate_fn: Any = None) -> None:
        self.dataset = dataset
        self.every = every
        self.tolerance = tolerance
        self.collate_fn = collate_fn
        self.baseline: float | None = None
        self.snapshot: dict[str, torch.Tensor] | None = None
        self.tripped_at: int | None = None

    def _measure(self, model: torch.nn.Module) -> float:
        return accuracy(model, self.dataset, collate_fn=self.collate_fn)

    def _keep(self, model: torch.nn.Module) -> None:
        self.snapshot = {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        self.baseline = self._measure(model)
        self._keep(model)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: torch.nn.Module | None = None, **kwargs: Any) -> TrainerControl:
        if state.global_step % self.every != 0 or self.baseline is None:
            return control
        current = self._measure(model)
        state.log_history.append({"step": state.global_step, "guard_original_accuracy": current})
        if current >= self.baseline - self.tolerance:
            self._keep(model)
            return control
        logger.warning(
            "Original-domain accuracy fell to %.3f (start %.3f, tolerance %.3f) at step %d: restoring the last "
            "good weights and stopping.", current, self.baseline, self.tolerance, state.global_step,
        )
        model.load_state_dict({name: value.to(next(model.parameters()).device) for name, value in self.snapshot.items()})
        self.tripped_at = state.global_step
        control.should_training_stop = True
        return control
