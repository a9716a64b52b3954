"""Sampling images from a UNet with ``DDPMPipeline`` and drawing them as grids next to real images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from hf_nft.attacks.files import atomic_path


@torch.no_grad()
def generate(unet: UNet2DModel, scheduler: DDPMScheduler, count: int, inference_steps: int, seed: int = 0) -> torch.Tensor:
    """``count`` samples ``(N, C, H, W)`` in [-1, 1] from ``DDPMPipeline`` with a seeded generator."""
    if count <= 0 or inference_steps <= 0:
        raise ValueError(f"count and inference_steps must be positive, got {count} and {inference_steps}.")
    pipeline = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    was_training = unet.training
    unet.eval()
    try:
        images = pipeline(batch_size=count, generator=torch.Generator().manual_seed(seed),
                          num_inference_steps=inference_steps, output_type="np").images
    finally:
        unet.train(was_training)
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() * 2.0 - 1.0


def tile(images: torch.Tensor, columns: int = 8) -> np.ndarray:
    """Images ``(N, 1, H, W)`` in [-1, 1] tiled into one ``(rows*H, columns*W)`` array in [0, 1]."""
    count, _, height, width = images.shape
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1), dtype=np.float32)
    pixels = ((images[:, 0].clamp(-1, 1) + 1) / 2).cpu().numpy()
    for index in range(count):
        row, column = divmod(index, columns)
        canvas[row * (height + 1): row * (height + 1) + height, column * (width + 1): column * (width + 1) + width] = (
            pixels[index])
    return canvas


def save_grids(path: str | Path, panels: dict[str, torch.Tensor], title: str, columns: int = 8) -> None:
    """One PNG with a grid of images per panel (e.g. real restricted images and each model's samples)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.6 * len(panels), 3.0))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (name, images) in zip(axes, panels.items()):
        axis.imshow(tile(images, columns), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
