"""Partial fine-tuning: the last N blocks of the backbone, everything after them, and the head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from hf_nft.attacks.base import Adaptation, Attack, freeze_all_but, reset_head_if_asked
from hf_nft.attacks.batches import AttackData
from hf_nft.modeling import classifier_head
from hf_nft.registry import ATTACKS


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's sequence of blocks: the ``nn.ModuleList`` holding the most parameters.

    That is ``vit.layers`` / ``bert.encoder.layer`` for transformers and ``resnet.encoder.stages`` for ResNets.
    """
    lists = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks to fine-tune partially.")
    return max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))


def trainable_names(model: nn.Module, num_blocks: int) -> set[str]:
    """Parameters of the last ``num_blocks`` blocks and of every module registered after them (final
    norms, pooler, head) - registration order follows the forward pass in transformers models."""
    prefix, blocks = block_list(model)
    if not isinstance(num_blocks, int) or not 1 <= num_blocks <= len(blocks):
        raise ValueError(f"num_blocks must be between 1 and {len(blocks)} (blocks of {prefix}), got {num_blocks!r}.")
    names = [name for name, _ in model.named_parameters()]
    first_block = len(blocks) - num_blocks
    start = next(i for i, name in enumerate(names) if name.startswith(f"{prefix}.{first_block}."))
    chosen = set(names[start:])
    head_prefix = classifier_head(model)[0]
    chosen |= {name for name in names if name.startswith(f"{head_prefix}.")}
    return chosen


@ATTACKS.register("partial_finetune")
class PartialFinetune(Attack):
    """Fine-tune the last ``num_blocks`` blocks plus the head; the rest stays frozen."""

    option_defaults: ClassVar[dict[str, Any]] = {"num_blocks": 1}

    def check_model(self, model: nn.Module) -> None:
        trainable_names(model, self.options["num_blocks"])

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        reset_head_if_asked(model, self.spec)
        chosen = trainable_names(model, self.options["num_blocks"])
        freeze_all_but(model, lambda name: name in chosen)
        return self.whole_model(model, data, device)
