"""What every attack kind implements, and the helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from hf_nft.attacks.batches import AttackData, Batch, Rows, model_inputs
from hf_nft.attacks.spec import check_keys
from hf_nft.modeling import classifier_head

if TYPE_CHECKING:
    from hf_nft.attacks.runner import AttackRun
    from hf_nft.attacks.spec import AttackSpec
    from hf_nft.evaluation.metrics import Metric


@dataclass
class Adaptation:
    """What the runner trains: ``module``'s parameters with ``requires_grad``, through ``logits``.

    ``model`` is the attacked model as a whole (for returning it), ``train`` the batches the attacker
    trains on and ``eval_batches`` those the curve is measured on. ``loss`` is the attacker's training loss on a
    batch (default: cross-entropy of ``logits`` against the labels; e.g. a diffusion attack's denoising loss).
    """

    model: nn.Module
    module: nn.Module
    logits: Callable[[Batch], torch.Tensor]
    train: Rows
    eval_batches: list[Batch]
    loss: Callable[[Batch], torch.Tensor] | None = None


class _Configured:
    """An attack kind built from a spec; ``options`` are the spec's options over ``option_defaults``."""

    option_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, spec: AttackSpec) -> None:
        self.spec = spec
        self.options = {**self.option_defaults, **spec.options}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Raise a ``ValueError`` for options this kind does not know or cannot use."""
        check_keys(options, list(cls.option_defaults), f"option of {cls.__name__}")

    @classmethod
    def label(cls, spec: AttackSpec) -> str:
        """The name a spec gets when it is given none, e.g. ``full_finetune/reset/adam/lr=0.001``."""
        reset = "/reset" if spec.reset_head else ""
        return f"{spec.kind}{reset}/{spec.optimizer}/lr={spec.learning_rate:g}"

    def check_model(self, model: nn.Module) -> None:
        """Raise a ``ValueError`` if this attack cannot run on ``model`` (called before any work)."""


class Attack(_Configured, ABC):
    """One kind of attack. ``prepare`` receives a private copy of the model, free to change; the runner
    has seeded torch's random state with the spec's seed."""

    @abstractmethod
    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        """Freeze, wrap or extend ``model`` for this attack."""

    def whole_model(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        """An adaptation that trains ``model`` end to end (whichever parameters require grad)."""
        spec = self.spec
        return Adaptation(
            model=model,
            module=model,
            logits=lambda batch: model(**model_inputs(batch, device)).logits,
            train=data.budget(spec.examples_per_class, spec.seed),
            eval_batches=data.eval_batches,
        )


class SearchAttack(_Configured, ABC):
    """An attack that chooses a concrete :class:`AttackSpec` (e.g. by hyperparameter search)."""

    @classmethod
    def label(cls, spec: AttackSpec) -> str:
        return spec.kind

    @abstractmethod
    def trial_count(self) -> int:
        """How many attack runs the search makes (for progress bars)."""

    @abstractmethod
    def search(
        self, model: nn.Module, data: AttackData, metric: Metric, on_trial: Callable[[], None] | None = None
    ) -> tuple[AttackSpec, dict[str, Any], AttackRun | None]:
        """The best concrete spec for ``model``, a summary of the search, and the search's own complete run of
        that spec (at its seed; ``None`` if it has none)."""


def reset_head_if_asked(model: nn.Module, spec: AttackSpec) -> None:
    """Re-initialise the classification head in place (``nn.Linear``'s own init) if ``spec.reset_head``."""
    if spec.reset_head:
        classifier_head(model)[1].reset_parameters()


def freeze_all_but(model: nn.Module, trainable: Callable[[str], bool]) -> None:
    """Let only the parameters whose names satisfy ``trainable`` require grad."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable(name))
