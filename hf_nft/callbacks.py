"""AttackEvalCallback: a short attack every N training steps, its restricted-domain metric logged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_nft.attacks.batches import AttackData, Collate
from hf_nft.attacks.runner import check_attacks, resolve
from hf_nft.attacks.spec import AttackSpec
from hf_nft.evaluation.metrics import Metric, get_metric

DEFAULT_ATTACK = {"kind": "full_finetune", "optimizer": "adam", "learning_rate": 1e-3, "steps": 50, "eval_every": 50}


class AttackEvalCallback(TrainerCallback):
    """Every ``every_n_steps`` optimisation steps, attack a copy of the model in training (NFT or plain) with
    each of ``attacks`` and log ``attack/<attack name>/<metric>`` (the final restricted-domain metric).

    With ``trainer`` (or ``callback.trainer = trainer`` after building it) the values go through
    ``Trainer.log``, so every reporting integration sees them; without, they are appended to
    ``state.log_history`` as ``Trainer.log`` would. The attacks never touch the trained model nor the
    Trainer's random state. Only the main process attacks.
    """

    def __init__(
        self,
        restricted_train: Dataset,
        restricted_eval: Dataset,
        attacks: AttackSpec | Sequence[AttackSpec] | None = None,
        every_n_steps: int = 50,
        metric: str | Metric = "accuracy",
        examples_per_class: int | None = 10,
        collate_fn: Collate | None = None,
        trainer: Trainer | None = None,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}.")
        if attacks is None:
            attacks = AttackSpec(**DEFAULT_ATTACK, examples_per_class=examples_per_class)
        self.attacks = [attacks] if isinstance(attacks, AttackSpec) else list(attacks)
        self.every_n_steps = every_n_steps
        self.metric = get_metric(metric)
        self.data = AttackData(restricted_train, restricted_eval, collate_fn)
        self.trainer = trainer

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: nn.Module, **kwargs: Any
    ) -> None:
        check_attacks(model, self.attacks, self.data)

    def attack(self, model: nn.Module) -> dict[str, float]:
        """Run every attack once on a copy of ``model``; the logged values."""
        logs = {}
        for spec in self.attacks:
            resolved = resolve(spec, model, self.data, self.metric)
            logs[f"attack/{spec.name}/{self.metric.name}"] = resolved.run(model, self.data, self.metric,
                                                                          resolved.spec.seed).final
        return logs

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: nn.Module, **kwargs: Any
    ) -> None:
        if state.global_step % self.every_n_steps or not state.is_world_process_zero:
            return
        logs = self.attack(model)
        if self.trainer is not None:
            should_log = control.should_log  # Trainer.log clears it; keep the Trainer's own logging due now
            self.trainer.log(logs)
            control.should_log = should_log
        else:
            state.log_history.append({**logs, "epoch": state.epoch, "step": state.global_step})
