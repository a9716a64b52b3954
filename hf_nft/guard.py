"""A collapse guard: roll back and stop if protection destroys the original task."""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

from hf_nft.attacks.batches import collated
from hf_nft.attacks.runner import score_model
from hf_nft.evaluation.metrics import get_metric

logger = logging.get_logger(__name__)


class OriginalTaskGuard(TrainerCallback):
    """Every ``every`` steps, measure original-domain accuracy; keep a snapshot of the last good weights, and
    if accuracy falls more than ``tolerance`` below its value at the start, restore that snapshot and stop."""

    def __init__(self, dataset: Any, every: int, tolerance: float, collate_fn: Any = None) -> None:
        self.batches = collated(dataset, collate_fn)  # collated once, scored at every check
        self.every = every
        self.tolerance = tolerance
        self.baseline: float | None = None
        self.snapshot: dict[str, torch.Tensor] | None = None
        self.tripped_at: int | None = None

    def _measure(self, model: torch.nn.Module) -> float:
        return score_model(model, self.batches, get_metric("accuracy"))

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
