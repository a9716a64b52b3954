"""Model introspection shared by methods and attacks: the classification head and its label count."""

from __future__ import annotations

import torch
from torch import nn


def classifier_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The qualified name and module of the final ``nn.Linear`` that produces the class logits.

    Looks for the last ``nn.Linear`` whose ``out_features`` equals ``model.config.num_labels``; raises a
    ``ValueError`` naming the model class if there is none (a model without a classification head).
    """
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    if num_labels is None:
        raise ValueError(f"{type(model).__name__} has no config.num_labels: it is not a classification model.")
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    found = [(name, module) for name, module in found if module.out_features == num_labels]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no linear classification head with {num_labels} outputs "
            "(expected an AutoModelFor*Classification model)."
        )
    return found[-1]


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``model.named_parameters()``) of the classification head's parameters."""
    prefix, head = classifier_head(model)
    return {f"{prefix}.{name}" for name, _ in head.named_parameters()}


@torch.no_grad()
def fresh_head_parameters(model: nn.Module, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """New values for the head's parameters, drawn as ``nn.Linear.reset_parameters`` would (model untouched)."""
    prefix, head = classifier_head(model)
    bound = 1.0 / head.in_features**0.5
    fresh = {f"{prefix}.weight": torch.empty_like(head.weight).uniform_(-bound, bound, generator=generator)}
    if head.bias is not None:
        fresh[f"{prefix}.bias"] = torch.empty_like(head.bias).uniform_(-bound, bound, generator=generator)
    return fresh
