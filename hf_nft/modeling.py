"""Model introspection shared by methods and attacks: the classification head, and fresh values for a layer."""

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


@torch.no_grad()
def fresh_layer_parameters(prefix: str, layer: nn.Module,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """New values for a layer's parameters as its ``reset_parameters`` would draw them (the layer is untouched):
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for a linear or convolution layer, ones and zeros for a norm layer."""
    if isinstance(layer, nn.Linear | nn.modules.conv._ConvNd):
        bound = 1.0 / layer.weight[0].numel() ** 0.5
        fresh = {"weight": torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator)}
        if layer.bias is not None:
            fresh["bias"] = torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator)
    elif isinstance(layer, nn.GroupNorm | nn.LayerNorm | nn.modules.batchnorm._NormBase):
        affine = layer.weight is not None  # a norm layer without an affine part has nothing to reset
        fresh = {"weight": torch.ones_like(layer.weight), "bias": torch.zeros_like(layer.bias)} if affine else {}
    else:
        raise ValueError(f"Cannot re-initialise {prefix!r}: {type(layer).__name__} is not a linear, convolution or "
                         "norm layer.")
    return {f"{prefix}.{name}": value for name, value in fresh.items()}
