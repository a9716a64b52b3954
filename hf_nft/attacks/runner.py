"""Running one attack: a deep copy of the model adapted on the restricted domain, its metric tracked."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn

from hf_nft.attacks.base import Adaptation, SearchAttack
from hf_nft.attacks.batches import AttackData, Batch, Collate, model_inputs
from hf_nft.attacks.models import check_label_count, load_classifier
from hf_nft.attacks.spec import AttackSpec
from hf_nft.evaluation.metrics import Metric, get_metric
from hf_nft.optimizers import build_optimizer
from hf_nft.registry import ATTACKS

OnEval = Callable[[int, float], None]


@dataclass
class AttackRun:
    """One attack run: the metric on the restricted evaluation set at ``steps`` (step 0 = before it, unless the
    spec skips it)."""

    spec: AttackSpec
    steps: list[int]
    values: list[float]
    trainable: list[str]
    seconds: float
    search: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def final(self) -> float:
        """The metric after the last step."""
        return self.values[-1]


def model_device(model: nn.Module) -> torch.device:
    """The device holding ``model``'s parameters."""
    return next(model.parameters()).device


def forked_rng(device: torch.device) -> AbstractContextManager:
    """A context restoring torch's random state (CPU and ``device``) on exit."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)


@torch.no_grad()
def score(logits: Callable[[Batch], torch.Tensor], batches: Iterable[Batch], metric: Metric) -> float:
    """``metric`` over ``batches`` with logits from ``logits``."""
    return metric((logits(batch), batch) for batch in batches)


def score_model(model: nn.Module, batches: list[Batch], metric: Metric) -> float:
    """``metric`` of ``model`` (in eval mode, restored afterwards) over ``batches``."""
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        return score(lambda batch: model(**model_inputs(batch, device)).logits, batches, metric)
    finally:
        model.train(was_training)


def check_attacks(model: nn.Module, specs: Iterable[AttackSpec], data: AttackData) -> None:
    """Raise a ``ValueError`` before any work if the data or any attack does not fit ``model``."""
    check_label_count(model, data.num_labels, "restricted domain")
    for spec in specs:
        ATTACKS.get(spec.kind)(spec).check_model(model)


@dataclass
class Resolved:
    """The concrete spec to run for an attack, the search that chose it (empty if none) and the search's own
    run of it at ``spec.seed`` (reused instead of running the same seed again)."""

    spec: AttackSpec
    search: dict[str, Any] = field(default_factory=dict)
    searched_run: AttackRun | None = None

    def run(self, model: nn.Module, data: AttackData, metric: Metric, seed: int, keep_model: bool = False) -> AttackRun:
        """The concrete spec run at ``seed`` on a copy of ``model`` (the search's run when it is the same)."""
        if self.searched_run is not None and seed == self.spec.seed and not keep_model:
            return self.searched_run
        return execute(model, self.spec.replace(seed=seed), data, metric, keep_model=keep_model)


def resolve(
    spec: AttackSpec, model: nn.Module, data: AttackData, metric: Metric, on_trial: Callable[[], None] | None = None
) -> Resolved:
    """What to run for ``spec`` on ``model``: ``spec`` itself, or what a search attack (e.g. ``tuned``) picks."""
    kind = ATTACKS.get(spec.kind)
    if issubclass(kind, SearchAttack):
        return Resolved(*kind(spec).search(model, data, metric, on_trial))
    return Resolved(spec)


def _train(
    adaptation: Adaptation, spec: AttackSpec, metric: Metric, on_eval: OnEval | None
) -> tuple[list[int], list[float]]:
    module = adaptation.module
    parameters = [parameter for parameter in module.parameters() if parameter.requires_grad]
    if not parameters:
        raise ValueError(f"Attack {spec.name!r} has no trainable parameters.")
    optimizer = build_optimizer(spec.optimizer, parameters, spec.learning_rate, spec.weight_decay)
    total = spec.total_steps(len(adaptation.train))
    batches = adaptation.train.shuffled(spec.batch_size, torch.Generator().manual_seed(spec.seed))
    steps: list[int] = []
    values: list[float] = []

    def record(step: int) -> None:
        module.eval()
        values.append(score(adaptation.logits, adaptation.eval_batches, metric))
        steps.append(step)
        module.train()
        if on_eval is not None:
            on_eval(step, values[-1])

    if spec.eval_at_start:
        record(0)
    for step in range(1, total + 1):
        batch = next(batches)
        if adaptation.loss is not None:
            loss = adaptation.loss(batch)
        else:
            logits = adaptation.logits(batch)
            loss = F.cross_entropy(logits, batch["labels"].to(logits.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % spec.eval_every == 0 or step == total:
            record(step)
    return steps, values


def execute(
    model: nn.Module,
    spec: AttackSpec,
    data: AttackData,
    metric: Metric,
    on_eval: OnEval | None = None,
    keep_model: bool = False,
) -> AttackRun:
    """Run concrete ``spec`` once on a deep copy of ``model`` (which is never modified).

    Torch's random state is seeded with ``spec.seed`` inside and restored afterwards, so a run is
    reproducible and does not disturb the caller (e.g. a Trainer running a callback).
    """
    device = model_device(model)
    start = time.perf_counter()
    with forked_rng(device):
        torch.manual_seed(spec.seed)
        adaptation = ATTACKS.get(spec.kind)(spec).prepare(copy.deepcopy(model), data, device)
        steps, values = _train(adaptation, spec, metric, on_eval)
    trainable = [name for name, parameter in adaptation.model.named_parameters() if parameter.requires_grad]
    return AttackRun(
        spec=spec,
        steps=steps,
        values=values,
        trainable=trainable,
        seconds=time.perf_counter() - start,
        model=adaptation.model if keep_model else None,
    )


def run_attack(
    model: nn.Module | str | Path,
    spec: AttackSpec,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    *,
    metric: str | Metric = "accuracy",
    collate_fn: Collate | None = None,
    return_model: bool = False,
) -> AttackRun:
    """Attack ``model`` (a classifier or its directory) once with ``spec`` on restricted-domain data.

    A search attack (``tuned``) first picks its configuration, then runs it with ``spec.seed``. With
    ``return_model`` the attacked copy is kept in the result.
    """
    model = load_classifier(model)
    metric = get_metric(metric)
    data = AttackData(train_dataset, eval_dataset, collate_fn)
    check_attacks(model, [spec], data)
    resolved = resolve(spec, model, data, metric)
    run = resolved.run(model, data, metric, spec.seed, keep_model=return_model)
    run.search = resolved.search
    return run
