"""Optimizers by name, shared by the simulated adversaries (methods) and the real ones (attacks)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch

# name -> (torch.optim class, fixed keyword arguments)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "sgd_momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
    "adadelta": (torch.optim.Adadelta, {}),
}


def check_optimizer_name(name: str) -> None:
    """Raise a ``ValueError`` with a "did you mean" hint if ``name`` is not a known optimizer."""
    if name not in OPTIMIZERS:
        close = difflib.get_close_matches(name, OPTIMIZERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown optimizer {name!r}.{hint} Known optimizers: {sorted(OPTIMIZERS)}.")


def build_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Instantiate optimizer ``name`` (see :data:`OPTIMIZERS`) over ``params``."""
    check_optimizer_name(name)
    if lr <= 0:
        raise ValueError(f"Learning rate must be positive, got {lr} for optimizer {name!r}.")
    if weight_decay < 0:
        raise ValueError(f"Weight decay must be non-negative, got {weight_decay}.")
    cls, kwargs = OPTIMIZERS[name]
    return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)
