"""Inputs synthesised from a classifier itself, for MAP's source-free and data-free settings.

Pseudo-source images are optimised so that the frozen model classifies them confidently as each class in turn,
under a total-variation prior (smooth, image-like inputs) and, for models with BatchNorm, a term matching each
BatchNorm layer's batch statistics to its running statistics (DeepInversion-style). LayerNorm models (the
quickstart's ConvNeXt) keep no running statistics, so only confidence and smoothness apply to them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from datasets import Array3D, ClassLabel, Dataset, Features
from torch import nn


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (low for smooth images)."""
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., :, 1:] - images[..., :, :-1]).abs().mean()


class _BatchNormStatistics:
    """Forward hooks that sum, over BatchNorm layers, the distance between batch and running statistics."""

    def __init__(self, model: nn.Module) -> None:
        self.losses: list[torch.Tensor] = []
        self.handles = [module.register_forward_hook(self._hook) for module in model.modules()
                        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        features = inputs[0].transpose(0, 1).flatten(1)
        self.losses.append(torch.norm(features.mean(1) - module.running_mean, 2)
                           + torch.norm(features.var(1, unbiased=False) - module.running_var, 2))

    def pop(self) -> torch.Tensor:
        loss = sum(self.losses, torch.tensor(0.0))
        self.losses.clear()
        return loss

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def synthesize_inputs(model: nn.Module, count: int, shape: tuple[int, ...], steps: int = 200, lr: float = 0.1,
                      tv_weight: float = 0.5, bn_weight: float = 0.05, batch_size: int = 128,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` inputs in [-1, 1] of ``shape`` that ``model`` classifies as classes ``0, 1, ..., C-1, 0, ...``,
    and the model's own labels for them. The model is left unchanged (eval mode during synthesis)."""
    if count <= 0 or steps <= 0:
        raise ValueError(f"count and steps must be positive, got {count} and {steps}.")
    device, was_training = next(model.parameters()).device, model.training
    num_classes = model.config.num_labels
    generator = torch.Generator().manual_seed(seed)
    statistics = _BatchNormStatistics(model)
    model.eval()
    images = []
    try:
        for start in range(0, count, batch_size):
            targets = torch.arange(start, min(start + batch_size, count), device=device) % num_classes
            latent = (torch.randn(len(targets), *shape, generator=generator) * 0.5).to(device).requires_grad_(True)
            optimizer = torch.optim.Adam([latent], lr=lr)
            for _ in range(steps):
                candidate = torch.tanh(latent)
                statistics.pop()
                loss = F.cross_entropy(model(pixel_values=candidate).logits, targets)
                loss = loss + tv_weight * total_variation(candidate) + bn_weight * statistics.pop()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            images.append(torch.tanh(latent).detach())
    finally:
        statistics.remove()
        model.train(was_training)
    pixels = torch.cat(images)
    with torch.no_grad():
        model.eval()
        labels = torch.cat([model(pixel_values=chunk).logits.argmax(-1) for chunk in pixels.split(batch_size)])
        model.train(was_training)
    return pixels.cpu(), labels.cpu()


def as_dataset(pixels: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Dataset:
    """Images and labels as a ``datasets.Dataset`` in the layout of :func:`hf_nft.data.load_domain`."""
    features = Features({"pixel_values": Array3D(shape=tuple(pixels.shape[1:]), dtype="float32"),
                         "labels": ClassLabel(num_classes=num_classes)})
    return Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": labels.numpy()},
                             features=features).with_format("torch")


def blocky(pixels: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Images re-rendered at ``1/factor`` resolution and upsampled by repetition (the look of 8x8 digits
    upsampled 2x, as in ``uci-digits``): average pooling, then nearest-neighbour upsampling."""
    return F.interpolate(F.avg_pool2d(pixels, factor), scale_factor=factor, mode="nearest")
