"""Probes on the frozen encoder: a linear or MLP head trained on the model's own penultimate features.

The features are what the model's own forward pass feeds its classification head (captured with a hook,
backbone in eval mode), computed once; the probe then replaces the head inside the attacked model.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import default_collate

from hf_nft.attacks.base import Adaptation, Attack, freeze_all_but, reset_head_if_asked
from hf_nft.attacks.batches import EVAL_BATCH_SIZE, AttackData, Batch, Rows, model_inputs
from hf_nft.modeling import classifier_head
from hf_nft.registry import ATTACKS


@torch.no_grad()
def head_features(model: nn.Module, batches: list[Batch], device: torch.device) -> list[Batch]:
    """For each batch, ``{"features": input of the classification head, "labels": labels}``."""
    _, head = classifier_head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**model_inputs(batch, device))
    finally:
        hook.remove()
        model.train(was_training)
    return [{"features": features, "labels": batch["labels"]} for features, batch in zip(captured, batches)]


class _Probe(Attack):
    """Train ``self.probe(head)`` on cached features; the encoder never changes."""

    @abstractmethod
    def probe(self, head: nn.Linear) -> nn.Module:
        """The trainable probe, given the model's classification head."""

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        reset_head_if_asked(model, self.spec)
        train = data.budget(self.spec.examples_per_class, self.spec.seed)
        train_features = head_features(model, train.chunks(EVAL_BATCH_SIZE), device)
        rows = [
            {"features": features, "labels": label}
            for batch in train_features
            for features, label in zip(batch["features"], batch["labels"])
        ]
        eval_features = head_features(model, data.eval_batches, device)
        name, head = classifier_head(model)
        probe = self.probe(head).to(device)
        model.set_submodule(name, probe)
        freeze_all_but(model, lambda parameter: parameter.startswith(f"{name}."))
        return Adaptation(
            model=model,
            module=probe,
            logits=lambda batch: probe(batch["features"].to(device)),
            train=Rows(rows, default_collate),
            eval_batches=eval_features,
        )


@ATTACKS.register("linear_probe")
class LinearProbe(_Probe):
    """A linear probe: the model's own head (re-initialised if ``reset_head``) on frozen features."""

    def probe(self, head: nn.Linear) -> nn.Module:
        return head


@ATTACKS.register("mlp_probe")
class MLPProbe(_Probe):
    """A freshly initialised two-layer MLP probe of width ``hidden_size`` on frozen features."""

    option_defaults: ClassVar[dict[str, Any]] = {"hidden_size": 128}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        super().check_options(options)
        hidden = options.get("hidden_size", cls.option_defaults["hidden_size"])
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"mlp_probe: hidden_size must be a positive integer, got {hidden!r}.")

    def probe(self, head: nn.Linear) -> nn.Module:
        hidden = self.options["hidden_size"]
        return nn.Sequential(nn.Linear(head.in_features, hidden), nn.ReLU(), nn.Linear(hidden, head.out_features))
