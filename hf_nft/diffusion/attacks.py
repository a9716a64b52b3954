"""Attacks on diffusion models for the attack harness, and their metric.

The harness trains an :class:`~hf_nft.attacks.base.Adaptation` and scores its ``logits`` with a metric; for a
``UNet2DModel`` the "logits" are its noise prediction on evaluation batches noised at fixed timesteps with fixed
noise seeds, the training loss is the ordinary denoising loss on the attacker's restricted images, and the
metric is the denoising MSE (the adversary's own objective; lower is better for the attacker).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from hf_nft.attacks.base import Adaptation, Attack, freeze_all_but
from hf_nft.attacks.batches import AttackData, Batch
from hf_nft.diffusion.denoising import (
    DEFAULT_BETA_SCHEDULE,
    DEFAULT_TRAIN_TIMESTEPS,
    batch_loss,
    denoising_mse,
    fixed_noise_batches,
    make_scheduler,
)
from hf_nft.evaluation.metrics import Metric, Outputs
from hf_nft.registry import ATTACKS, METRICS

# Evaluation timesteps, as fractions of the schedule: from lightly to heavily noised.
EVAL_TIMESTEP_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


def eval_timesteps(num_train_timesteps: int) -> list[int]:
    """The fixed timesteps every diffusion evaluation noises its images at."""
    return [int(fraction * num_train_timesteps) for fraction in EVAL_TIMESTEP_FRACTIONS]


@METRICS.register("denoising_mse")
class DenoisingMSE(Metric):
    """Mean squared error of the predicted noise against the true noise, per element, over all examples."""

    name = "denoising_mse"
    higher_is_better = False

    def __call__(self, outputs: Iterable[Outputs]) -> float:
        total, count = 0.0, 0
        for prediction, batch in outputs:
            noise = batch["noise"].to(prediction.device)
            total += float((prediction.float() - noise.float()).pow(2).sum())
            count += noise.numel()
        return total / count


class _DiffusionAttack(Attack):
    """Train a UNet on the restricted images with the denoising loss; score its denoising MSE at fixed noise."""

    option_defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": DEFAULT_TRAIN_TIMESTEPS, "beta_schedule": DEFAULT_BETA_SCHEDULE, "noise_seed": 0,
    }

    @classmethod
    def label(cls, spec: Any) -> str:
        return f"{spec.kind}/{spec.optimizer}/lr={spec.learning_rate:g}"

    def check_model(self, model: nn.Module) -> None:
        if self.spec.reset_head:
            raise ValueError(f"Attack {self.spec.name!r}: a diffusion UNet has no classification head to reset.")
        config = getattr(model, "config", None)
        if config is None or "sample_size" not in config:
            raise ValueError(f"Attack {self.spec.name!r} attacks a diffusers UNet2DModel, not {type(model).__name__}.")
        make_scheduler(self.options["num_train_timesteps"], self.options["beta_schedule"])

    def adapt(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        """An adaptation training ``model``'s parameters that require grad with the denoising loss."""
        self.check_model(model)
        options = self.options
        scheduler = make_scheduler(options["num_train_timesteps"], options["beta_schedule"])
        model.to(device)

        def forward(batch: Batch) -> Any:
            return model(**{key: value.to(device) for key, value in batch.items()})

        def prediction(batch: Batch) -> torch.Tensor:
            return forward({"sample": batch["sample"], "timestep": batch["timestep"]}).sample

        def loss(batch: Batch) -> torch.Tensor:
            images = {"pixel_values": batch["pixel_values"].to(device)}
            return batch_loss(denoising_mse, forward, images, scheduler)

        timesteps = eval_timesteps(options["num_train_timesteps"])
        return Adaptation(
            model=model, module=model, logits=prediction,
            train=data.budget(self.spec.examples_per_class, self.spec.seed),
            eval_batches=fixed_noise_batches(data.eval_batches, scheduler, timesteps, options["noise_seed"]),
            loss=loss,
        )


@ATTACKS.register("diffusion_finetune")
class DiffusionFinetune(_DiffusionAttack):
    """Full fine-tuning of the UNet on the restricted images."""

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        freeze_all_but(model, lambda name: True)
        return self.adapt(model, data, device)


@ATTACKS.register("diffusion_lora")
class DiffusionLoRA(_DiffusionAttack):
    """LoRA (peft) on the UNet's attention projections and ResNet convolutions; the base weights stay frozen."""

    option_defaults: ClassVar[dict[str, Any]] = {
        **_DiffusionAttack.option_defaults, "rank": 8, "alpha": 16, "target_modules": LORA_TARGETS,
    }

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        options = self.options
        config = LoraConfig(r=options["rank"], lora_alpha=options["alpha"], target_modules=options["target_modules"])
        try:
            inject_adapter_in_model(config, model)
        except ValueError as error:
            raise ValueError(f"Attack {self.spec.name!r}: peft cannot adapt {type(model).__name__}: {error}") from error
        freeze_all_but(model, lambda name: "lora_" in name)
        return self.adapt(model, data, device)
