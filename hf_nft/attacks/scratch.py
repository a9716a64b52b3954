"""The scratch baseline: the same architecture, freshly initialised, attacked the same way.

A protection is good when the attacked protected model does no better than this.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from hf_nft.attacks.models import auto_class


def scratch_model(model: PreTrainedModel, seed: int = 0) -> PreTrainedModel:
    """A freshly initialised model of ``model``'s architecture (``AutoModelFor*.from_config``), seeded.

    It lands on ``model``'s device and dtype; torch's global random state is left as it was.
    """
    config = copy.deepcopy(model.config)
    auto = auto_class(config, type(model).__name__)
    parameter = next(model.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = auto.from_config(config)
    return fresh.to(device=parameter.device, dtype=parameter.dtype)
