"""SOPHON for diffusion models: a ``diffusers`` ``UNet2DModel`` (noise prediction under a ``DDPMScheduler``) that
keeps denoising its original domain but cannot be fine-tuned to denoise the restricted one.

Everything but the losses is :class:`~hf_nft.methods.sophon.Sophon`'s: the alternation of fine-tuning suppression
(FTS) and normal-training reinforcement (NTR), the adversary pool and the shared functional simulation. The
simulated adversary minimises the ordinary denoising loss ``MSE(eps_hat, eps)`` on restricted images; the
non-fine-tunable loss along its trajectory is ``diffusion_nft_loss`` (``dos``: ``||eps_hat||^2``, or
``mse_ascent``: ``-MSE``); NTR is the denoising loss on original-domain images. A UNet has no classification head,
so the simulated adversaries never reset one (``head_reset_probability`` does not apply). The collapse guard
measures classification accuracy and is not used (``guard_every`` must be 0 when an ``eval_dataset`` is given).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hf_nft.diffusion.denoising import (
    DIFFUSION_NFT_LOSSES,
    IMAGE_KEY,
    batch_loss,
    denoising_mse,
    make_scheduler,
)
from hf_nft.methods._simulation import AdversaryPool, Batch, Forward
from hf_nft.methods.sophon import Sophon
from hf_nft.registry import METHODS


@METHODS.register("sophon_diffusion")
class SophonDiffusion(Sophon):
    """SOPHON's diffusion mode (Deng et al., IEEE S&P 2024), first-order, for ``diffusers`` ``UNet2DModel``."""

    name = "sophon_diffusion"

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        self.pool = AdversaryPool(self.args.adversary_pool, self.args.adversary_batch_sizes, 0.0, seed=self.args.seed)
        self.scheduler = make_scheduler(self.args.diffusion_train_timesteps, self.args.diffusion_beta_schedule)
        self.diffusion_nft_loss = DIFFUSION_NFT_LOSSES[self.args.diffusion_nft_loss]

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
        keys = ("diffusion_nft_loss", "diffusion_train_timesteps", "diffusion_beta_schedule", "alpha", "beta",
                "fts_steps", "ntr_steps", "inner_steps", "adversary_pool", "adversary_batch_sizes",
                "query_batch_size", "learning_rate", "max_grad_norm", "max_steps")
        return {"method": self.name, **{key: getattr(self.args, key) for key in keys}}

    def reinforcement_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        return batch_loss(denoising_mse, lambda batch: model(**batch), inputs, self.scheduler, self._generator)

    def adversary_loss(self, forward: Forward, batch: Batch) -> torch.Tensor:
        return batch_loss(denoising_mse, forward, batch, self.scheduler, self._generator)

    def _nft_loss_of_batch(self, forward: Forward, batch: Batch) -> torch.Tensor:
        return batch_loss(self.diffusion_nft_loss, forward, batch, self.scheduler, self._generator)


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
