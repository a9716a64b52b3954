"""The tuned attacker: an Optuna search over attack hyperparameters for the best restricted-domain score.

Defenses that hold against a fixed attack often fall to one whose hyperparameters were tuned, so this is
the headline attack. The search maximises the attacker's final metric on the restricted evaluation split
(the worst case for the defender) with TPE sampling and median pruning on the metric curve (after 5
trials and half the shortest attack); the best configuration is then rerun over the suite's seeds like
any other attack (the best trial's own run stands for the rerun at the search's seed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import optuna
from torch import nn

from hf_nft.attacks.base import SearchAttack
from hf_nft.attacks.batches import AttackData
from hf_nft.attacks.runner import AttackRun, execute
from hf_nft.attacks.spec import AttackSpec
from hf_nft.evaluation.metrics import Metric
from hf_nft.optimizers import check_optimizer_name
from hf_nft.registry import ATTACKS

SEARCH_OPTIMIZERS = ["sgd", "sgd_momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]


def _check_range(options: dict[str, Any], key: str, kind: type) -> None:
    bounds = options[key]
    numbers = isinstance(bounds, (list, tuple)) and all(isinstance(b, (int, float)) for b in bounds)
    if not numbers or len(bounds) != 2:
        raise ValueError(f"tuned: option {key!r} must be [low, high], got {bounds!r}.")
    if not 0 < bounds[0] <= bounds[1] or (kind is int and not all(isinstance(b, int) for b in bounds)):
        raise ValueError(f"tuned: option {key!r} must satisfy 0 < low <= high ({kind.__name__}s), got {bounds!r}.")


@ATTACKS.register("tuned")
class TunedAttack(SearchAttack):
    """Search ``kinds`` x ``optimizers`` x ``learning_rate`` (log range) x ``steps`` x ``reset_head``.

    Batch size, weight decay, data budget and evaluation interval come from the spec itself.
    """

    option_defaults: ClassVar[dict[str, Any]] = {
        "trials": 10,
        "kinds": ["full_finetune", "partial_finetune", "linear_probe", "lora"],
        "optimizers": SEARCH_OPTIMIZERS,
        "learning_rate": [1e-4, 1e-1],
        "steps": [100, 300],
        "reset_head": [False, True],
        "pruning": True,
    }

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        super().check_options(options)
        merged = {**cls.option_defaults, **options}
        if not isinstance(merged["trials"], int) or merged["trials"] < 1:
            raise ValueError(f"tuned: trials must be a positive integer, got {merged['trials']!r}.")
        for key in ("kinds", "optimizers", "reset_head"):
            if not isinstance(merged[key], list) or not merged[key]:
                raise ValueError(f"tuned: option {key!r} must be a non-empty list, got {merged[key]!r}.")
        for kind in merged["kinds"]:
            if issubclass(ATTACKS.get(kind), SearchAttack):
                raise ValueError(f"tuned: cannot search over the search attack {kind!r}.")
        for name in merged["optimizers"]:
            check_optimizer_name(name)
        _check_range(merged, "learning_rate", float)
        _check_range(merged, "steps", int)

    def candidate(self, trial: optuna.trial.BaseTrial) -> AttackSpec:
        """The concrete spec a trial (or a ``FixedTrial`` of the best parameters) stands for."""
        options, spec = self.options, self.spec
        return AttackSpec(
            kind=trial.suggest_categorical("kind", options["kinds"]),
            name=spec.name,
            optimizer=trial.suggest_categorical("optimizer", options["optimizers"]),
            learning_rate=trial.suggest_float("learning_rate", *options["learning_rate"], log=True),
            weight_decay=spec.weight_decay,
            batch_size=spec.batch_size,
            steps=trial.suggest_int("steps", *options["steps"]),
            examples_per_class=spec.examples_per_class,
            reset_head=trial.suggest_categorical("reset_head", options["reset_head"]),
            eval_every=spec.eval_every,
            seed=spec.seed,
            eval_at_start=spec.eval_at_start,
        )

    def trial_count(self) -> int:
        return self.options["trials"]

    def check_model(self, model: nn.Module) -> None:
        for kind in self.options["kinds"]:
            ATTACKS.get(kind)(self.spec.replace(kind=kind, options={})).check_model(model)

    def search(
        self, model: nn.Module, data: AttackData, metric: Metric, on_trial: Callable[[], None] | None = None
    ) -> tuple[AttackSpec, dict[str, Any], AttackRun | None]:
        runs: dict[int, AttackRun] = {}

        def objective(trial: optuna.Trial) -> float:
            def report(step: int, value: float) -> None:
                if step == 0:  # the starting point says little (a reset head starts at chance)
                    return
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            try:
                runs[trial.number] = execute(model, self.candidate(trial), data, metric, on_eval=report)
                return runs[trial.number].final
            finally:
                if on_trial is not None:
                    on_trial()

        warmup = self.options["steps"][0] // 2
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
        if not self.options["pruning"]:
            pruner = optuna.pruners.NopPruner()
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(
                direction="maximize" if metric.higher_is_better else "minimize",
                sampler=optuna.samplers.TPESampler(seed=self.spec.seed),
                pruner=pruner,
            )
            study.optimize(objective, n_trials=self.options["trials"])
        finally:
            optuna.logging.set_verbosity(verbosity)
        states = [trial.state for trial in study.trials]
        summary = {
            "trials": len(study.trials),
            "pruned": states.count(optuna.trial.TrialState.PRUNED),
            "best_value": study.best_value,
            "best_params": study.best_params,
        }
        return self.candidate(optuna.trial.FixedTrial(study.best_params)), summary, runs[study.best_trial.number]
