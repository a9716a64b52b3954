"""Building and pre-training a small DDPM (``UNet2DModel``) with ``transformers.Trainer``."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from transformers import Trainer

from hf_nft.diffusion.denoising import batch_loss, denoising_mse


def small_unet(image_size: int = 16, channels: int = 1, seed: int = 0,
               widths: tuple[int, int] = (32, 64)) -> UNet2DModel:
    """A small UNet2DModel (``widths`` channels, ~700k parameters by default, attention at the lower resolution),
    freshly initialised from ``seed`` (torch's global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=image_size, in_channels=channels, out_channels=channels, block_out_channels=widths,
            layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        )


class DenoisingTrainer(Trainer):
    """``Trainer`` whose loss is the DDPM denoising loss of ``scheduler`` on the batch's ``pixel_values``.

    Give ``TrainingArguments(remove_unused_columns=False)``: the UNet's forward takes ``sample``/``timestep``.
    """

    def __init__(self, *args: Any, scheduler: DDPMScheduler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.remove_unused_columns:
            raise ValueError("DenoisingTrainer needs remove_unused_columns=False (the 'pixel_values' column).")
        self.noise_scheduler = scheduler

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        loss = batch_loss(denoising_mse, lambda batch: model(**batch), inputs, self.noise_scheduler)
        return (loss, None) if return_outputs else loss


def save_pipeline(unet: UNet2DModel, scheduler: DDPMScheduler, path: Any) -> None:
    """Write ``unet`` and ``scheduler`` as a ``DDPMPipeline`` folder (``DDPMPipeline.from_pretrained(path)``)."""
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(path), safe_serialization=True)
