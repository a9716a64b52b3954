"""SOPHON for diffusion models: a ``diffusers`` ``UNet2DModel`` (noise prediction under a ``DDPMScheduler``) that
keeps denoising its original domain but cannot be fine-tuned to denoise the restricted one.

Everything but the losses is :class:`~hf_nft.methods.sophon.Sophon`'s: the alternation of fine-tuning suppression
(FTS) and normal-training reinforcement (NTR), the adversary pool and the shared functional simulation. The
simulated adversary minimises the ordinary denoising loss ``MSE(eps_hat, eps)`` on restricted images; the
non-fine-tunable loss along its trajectory is ``diffusion_nft_loss`` (``dos``: ``||eps_hat||^2``, ``mse_ascent``:
``-MSE``, or ``bounded_ascent``: ``-min(MSE, diffusion_nft_bound)``), on restricted images noised below
``diffusion_suppression_max_timestep`` (at high noise the two domains' noisy images cannot be told apart, so
suppressing there costs the original domain). NTR is the denoising loss on original-domain images, plus
``diffusion_ntr_distillation`` times the MSE to the noise prediction of the model as it was given to the trainer
(a low-variance pull towards the original behaviour); the last ``diffusion_final_ntr_steps`` steps are NTR only,
with the learning rate annealed linearly to ``diffusion_final_ntr_learning_rate`` when it is set. With
``diffusion_stop_adversary_loss`` the alternation ends as soon as the simulated fine-tuning fails by that much (the
adversary's loss after its last step, averaged over ``diffusion_stop_window`` FTS steps), and the repair starts
there: how long the alternation needs to get there differs from run to run. With ``diffusion_repair_fts_every`` = k,
every k-th repair step is an FTS step, a maintenance of the protection while the original domain is repaired (none
in the last k steps, or in the last ``diffusion_repair_quiet_steps`` if more); with
``diffusion_repair_original_tolerance`` = tau a due maintenance step waits until the original domain is repaired to
within tau (the NTR steps' denoising MSE since the last FTS step over the MSE of the model as given to the trainer
on the same noisy image, averaged over images), so the repair first restores the original domain and then spends
what the tolerance leaves on the protection. A UNet has no classification head; with probability
``head_reset_probability`` a simulated adversary re-initialises the UNet's output layers instead (``conv_norm_out``
and ``conv_out``: an attacker who suspects the protection sits in the layer that scales the noise prediction resets
it), so the protection cannot live there alone. The collapse guard measures classification accuracy and is not
used (``guard_every`` must be 0 when an ``eval_dataset`` is given).
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_nft.diffusion.denoising import (
    IMAGE_KEY,
    add_noise,
    batch_loss,
    denoising_mse,
    make_scheduler,
    nft_loss_function,
    predict_noise,
)
from hf_nft.methods._simulation import Batch, Forward
from hf_nft.methods.sophon import Sophon
from hf_nft.registry import METHODS


@METHODS.register("sophon_diffusion")
class SophonDiffusion(Sophon):
    """SOPHON's diffusion mode (Deng et al., IEEE S&P 2024), first-order, for ``diffusers`` ``UNet2DModel``."""

    name = "sophon_diffusion"
    head_layers = ("conv_norm_out", "conv_out")

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        self.scheduler = make_scheduler(self.args.diffusion_train_timesteps, self.args.diffusion_beta_schedule)
        self.diffusion_nft_loss = nft_loss_function(self.args.diffusion_nft_loss, self.args.diffusion_nft_bound)
        self.suppression_max_timestep = self.args.diffusion_suppression_max_timestep or None
        self.reference: nn.Module | None = None
        tolerance = self.args.diffusion_repair_original_tolerance
        if self.args.diffusion_ntr_distillation > 0 or tolerance > 0:
            self.reference = copy.deepcopy(trainer.model).eval().requires_grad_(False)
        # The global step from which the repair runs (None: the last diffusion_final_ntr_steps).
        self.alternation_end_step: int | None = None
        self._adversary_losses: deque[float] = deque(maxlen=self.args.diffusion_stop_window)
        self._last_fts_step = -1
        self.maintenance_steps: list[int] = []  # the global steps of the repair's FTS steps
        # Per NTR step since the last FTS step: the mean over its original images of the model's denoising MSE over
        # the reference's on the same noisy image.
        self._original_ratios: deque[float] = deque(maxlen=max(1, self.args.diffusion_repair_fts_every))

    def validate(self) -> None:
        model = self.trainer.model
        config = getattr(model, "config", None)
        if config is None or "sample_size" not in config or "in_channels" not in config:
            raise ValueError(f"sophon_diffusion protects a diffusers UNet2DModel; got {type(model).__name__}.")
        if self.args.remove_unused_columns:
            raise ValueError("sophon_diffusion needs remove_unused_columns=False: the UNet's forward takes "
                             f"'sample' and 'timestep', so the Trainer would drop the {IMAGE_KEY!r} column.")
        if self.args.guard_every > 0 and self.trainer.eval_dataset is not None:
            raise ValueError("The collapse guard measures classification accuracy; set guard_every=0 for "
                             "sophon_diffusion.")
        shape = (config["in_channels"], config["sample_size"], config["sample_size"])
        for role, dataset in (("original-domain train_dataset", self.trainer.train_dataset),
                              ("restricted_dataset", self.trainer.restricted_dataset)):
            check_image_dataset(dataset, role, shape)

    def settings(self) -> dict[str, Any]:
        keys = ("diffusion_nft_loss", "diffusion_nft_bound", "diffusion_suppression_max_timestep",
                "diffusion_ntr_distillation", "diffusion_final_ntr_steps", "diffusion_final_ntr_learning_rate",
                "diffusion_stop_adversary_loss", "diffusion_stop_window", "diffusion_repair_fts_every",
                "diffusion_repair_original_tolerance",
                "diffusion_repair_quiet_steps", "diffusion_train_timesteps",
                "diffusion_beta_schedule", "alpha", "beta", "fts_steps", "ntr_steps", "inner_steps", "adversary_pool",
                "adversary_batch_sizes", "head_reset_probability",
                "query_batch_size", "learning_rate", "max_grad_norm", "max_steps")
        return {"method": self.name, **{key: getattr(self.args, key) for key in keys}}

    def is_suppression_step(self) -> bool:
        if not self.in_final_steps():
            return super().is_suppression_step()
        every, step = self.args.diffusion_repair_fts_every, self.trainer.state.global_step
        if every == 0:
            return False
        last = max(self._last_fts_step, self.repair_start() - 1)
        # step == last: a later micro-batch of an FTS step (gradient accumulation) is FTS too. A maintenance step
        # is followed by at least a whole period of NTR steps, so the released model is never one an FTS step just
        # left.
        quiet = max(every, self.args.diffusion_repair_quiet_steps)
        due = step - last >= every and step + quiet < self.trainer.state.max_steps
        return step == last or (due and self.original_within_tolerance())

    def original_ratio(self) -> float | None:
        """The model's original-domain denoising MSE over the reference model's on the same noisy image, averaged
        over the images of the NTR steps since the last FTS step (None before any). Per image, so that a timestep
        with a small error weighs as much as one with a large error."""
        return sum(self._original_ratios) / len(self._original_ratios) if self._original_ratios else None

    def original_within_tolerance(self) -> bool:
        """Whether the original domain is repaired to within ``diffusion_repair_original_tolerance`` (always, when
        it is 0)."""
        tolerance = self.args.diffusion_repair_original_tolerance
        ratio = self.original_ratio()
        return tolerance == 0 or (ratio is not None and ratio <= 1 + tolerance)

    def repair_start(self) -> int:
        """The global step from which the repair runs (NTR steps, and maintenance FTS steps if any)."""
        scheduled = self.trainer.state.max_steps - self.args.diffusion_final_ntr_steps
        return scheduled if self.alternation_end_step is None else min(scheduled, self.alternation_end_step)

    def in_final_steps(self) -> bool:
        """Whether the current optimizer step is one of the final (repair) steps."""
        return self.trainer.state.global_step >= self.repair_start()

    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        final, start = self.args.diffusion_final_ntr_learning_rate, self.repair_start()
        if final > 0 and self.in_final_steps() and self.trainer.optimizer is not None:
            done, steps = self.trainer.state.global_step - start, self.trainer.state.max_steps - start
            rate = self.args.learning_rate + (final - self.args.learning_rate) * done / max(1, steps - 1)
            # Set before this step's optimizer.step(); the scheduler resets it after, so it is set every step.
            for group in self.trainer.optimizer.param_groups:
                group["lr"] = rate
        loss, metrics = super().training_loss(model, inputs)
        ratio = self.original_ratio()
        if "ntr_loss" in metrics and ratio is not None:
            metrics["ntr_original_ratio"] = ratio
        return loss, metrics

    def _suppression_loss(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        surrogate, metrics = super()._suppression_loss(model)
        self._last_fts_step = self.trainer.state.global_step
        self._original_ratios.clear()
        if self.in_final_steps():
            self.maintenance_steps.append(self._last_fts_step)
        target, losses = self.args.diffusion_stop_adversary_loss, self._adversary_losses
        losses.append(metrics["fts_adversary_loss_end"])
        # Once ended, the alternation stays ended: the repair's maintenance FTS steps do not move its start.
        if target > 0 and self.alternation_end_step is None and len(losses) == losses.maxlen and (
                sum(losses) / len(losses) >= target):
            self.alternation_end_step = self.trainer.state.global_step + 1
            metrics["alternation_end_step"] = float(self.alternation_end_step)
        return surrogate, metrics

    def reinforcement_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        if IMAGE_KEY not in inputs:
            raise ValueError(f"A diffusion batch needs a {IMAGE_KEY!r} key; got keys {sorted(inputs)}.")
        noisy, timesteps, noise = add_noise(inputs[IMAGE_KEY], self.scheduler, self._generator)
        prediction = predict_noise(lambda batch: model(**batch), noisy, timesteps)
        loss = denoising_mse(prediction, noise)
        if self.reference is None:
            return loss
        self.reference.to(prediction.device)
        with torch.no_grad():
            target = predict_noise(lambda batch: self.reference(**batch), noisy, timesteps)
        self._original_ratios.append((per_image_mse(prediction, noise) / per_image_mse(target, noise)).mean().item())
        return loss + self.args.diffusion_ntr_distillation * F.mse_loss(prediction.float(), target.float())

    def adversary_loss(self, forward: Forward, batch: Batch) -> torch.Tensor:
        return batch_loss(denoising_mse, forward, batch, self.scheduler, self._generator)

    def _nft_loss_of_batch(self, forward: Forward, batch: Batch) -> torch.Tensor:
        return batch_loss(self.diffusion_nft_loss, forward, batch, self.scheduler, self._generator,
                          self.suppression_max_timestep)


def per_image_mse(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The denoising MSE of each image of a batch."""
    return (prediction.detach().float() - noise.float()).pow(2).flatten(1).mean(dim=1)


def check_image_dataset(dataset: Any, role: str, shape: tuple[int, int, int]) -> None:
    """Raise if ``dataset`` is missing, empty, or its images are not ``shape`` (the UNet's input)."""
    if dataset is None:
        raise ValueError(f"NFTTrainer needs a {role}; got None.")
    if len(dataset) == 0:
        raise ValueError(f"The {role} is empty.")
    first = dataset[0]
    if IMAGE_KEY not in first:
        raise ValueError(f"The {role} has no {IMAGE_KEY!r} column (keys: {sorted(first)}).")
    found = tuple(torch.as_tensor(first[IMAGE_KEY]).shape)
    if found != shape:
        raise ValueError(f"The {role}'s images have shape {found} but the UNet takes {shape}.")
