"""MAP (mask pruning, Peng et al., CVPR 2024): freeze the model and learn a binary mask over its weights that
makes it fail on the restricted (target) domain while it keeps the original (source) domain.

Each step's loss is ``source + map_target_weight * nft_loss(masked model on a restricted batch)``. The source
term depends on ``map_setting``:

- ``source-available``: cross-entropy on the labelled original-domain batch (``train_dataset``);
- ``source-free`` and ``data-free``: ``train_dataset`` holds pseudo-source inputs (e.g. synthesised from the
  model with :func:`hf_nft.methods._synthesis.synthesize_inputs`), and the masked model is distilled to the
  unmasked one's outputs on them (KL at ``map_distill_temperature``); their labels are never used.

Only the mask scores are trained (every original parameter is frozen, and BatchNorm layers run on their
frozen running statistics, as the released model will). At the end of training a callback bakes
the masks into the weights (pruned entries become zeros, the model becomes an ordinary one that
``save_pretrained`` writes as plain safetensors) and writes ``mask.safetensors`` to ``args.output_dir``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_nft.losses import NFT_LOSS_FUNCTIONS
from hf_nft.methods._masking import (
    attach_masks,
    bake_masks,
    current_masks,
    freeze_norm_statistics,
    maskable_modules,
    save_masks,
    sparsity,
)
from hf_nft.methods.base import ProtectionMethod, check_labelled_dataset
from hf_nft.modeling import classifier_head
from hf_nft.registry import METHODS

MASK_FILE = "mask.safetensors"


class BakeMasksCallback(TrainerCallback):
    """At the end of training, bake the method's masks into plain weights and save the mask file."""

    def __init__(self, method: MaskPruning) -> None:
        self.method = method

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self.method.finish(write=state.is_world_process_zero)


@METHODS.register("map")
class MaskPruning(ProtectionMethod):
    """MAP for ``AutoModelFor*Classification`` models (unstructured weight masks, straight-through scores)."""

    name = "map"

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        model = trainer.accelerator.unwrap_model(trainer.model)
        self.distill = self.args.map_setting != "source-available"
        # The unmasked model, frozen: the distillation teacher and the "before" of every measurement.
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False) if self.distill else None
        self.module_names = maskable_modules(model, self.args.mask_include_head, self.args.mask_target_modules)
        if self.module_names:
            attach_masks(model, self.module_names, self.args.mask_max_sparsity, self.args.mask_score_init)
        self.nft_loss = NFT_LOSS_FUNCTIONS[self.args.nft_loss]
        self.masks: dict[str, torch.Tensor] | None = None
        self._batches: Iterator[dict[str, Any]] | None = None
        trainer.add_callback(BakeMasksCallback(self))

    def validate(self) -> None:
        _, head = classifier_head(self.trainer.model)
        if not self.module_names:
            raise ValueError(
                f"MAP found no linear/convolution weight to mask (mask_target_modules={self.args.mask_target_modules}, "
                f"mask_include_head={self.args.mask_include_head})."
            )
        role = "original-domain train_dataset" if not self.distill else "pseudo-source train_dataset"
        check_labelled_dataset(self.trainer.train_dataset, role, head.out_features)
        check_labelled_dataset(self.trainer.restricted_dataset, "restricted_dataset", head.out_features)

    def settings(self) -> dict[str, Any]:
        keys = ("map_setting", "nft_loss", "map_target_weight", "map_distill_temperature", "mask_max_sparsity",
                "mask_score_init", "mask_include_head", "mask_target_modules", "learning_rate", "max_steps")
        settings = {"method": self.name, **{key: getattr(self.args, key) for key in keys}}
        if self.masks is not None:
            settings["mask_sparsity"] = sparsity(self.masks)
        return settings

    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        unwrapped = self.trainer.accelerator.unwrap_model(model)
        freeze_norm_statistics(unwrapped)
        source = self._distillation_loss(model, inputs) if self.distill else model(**inputs).loss
        if self._batches is None:
            self._batches = self.trainer.restricted_batches()
        batch = next(self._batches)
        target = self.nft_loss(model(**batch).logits, batch["labels"])
        loss = source + self.args.map_target_weight * target
        metrics = {"map_source_loss": source.item(), "map_target_loss": target.item(),
                   "mask_sparsity": sparsity(current_masks(unwrapped))}
        return loss, metrics

    def _distillation_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        features = {key: value for key, value in inputs.items() if key != "labels"}
        temperature = self.args.map_distill_temperature
        with torch.no_grad():
            teacher = F.softmax(self.teacher(**features).logits.float() / temperature, dim=-1)
        student = F.log_softmax(model(**features).logits.float() / temperature, dim=-1)
        return F.kl_div(student, teacher, reduction="batchmean") * temperature**2

    def finish(self, write: bool = True) -> dict[str, torch.Tensor]:
        """Bake the masks into the model's weights (once) and write ``mask.safetensors`` to ``output_dir``."""
        if self.masks is None:
            self.masks = bake_masks(self.trainer.accelerator.unwrap_model(self.trainer.model))
        if write:
            self.save_masks(self.args.output_dir)
        return self.masks

    def save_masks(self, directory: str | Path) -> Path:
        """Write the baked masks to ``directory/mask.safetensors`` (after training)."""
        if self.masks is None:
            raise ValueError("No masks yet: train first (the masks are baked at the end of training).")
        path = Path(directory) / MASK_FILE
        save_masks(self.masks, path)
        return path
