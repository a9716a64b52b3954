"""Full fine-tuning: every parameter trains, with the head kept or re-initialised (``reset_head``)."""

from __future__ import annotations

import torch
from torch import nn

from hf_nft.attacks.base import Adaptation, Attack, freeze_all_but, reset_head_if_asked
from hf_nft.attacks.batches import AttackData
from hf_nft.registry import ATTACKS


@ATTACKS.register("full_finetune")
class FullFinetune(Attack):
    """Fine-tune the whole model on the restricted domain."""

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        reset_head_if_asked(model, self.spec)
        freeze_all_but(model, lambda name: True)
        return self.whole_model(model, data, device)
