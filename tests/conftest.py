"""Shared fixtures: tiny models built from configs and tiny labelled image datasets (no downloads)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import ResNetConfig, ResNetForImageClassification

torch.set_num_threads(1)


def tiny_resnet(num_labels: int = 4, seed: int = 0) -> ResNetForImageClassification:
    """A ~10k-parameter ResNet classifier for 1x16x16 images."""
    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                          layer_type="basic", num_labels=num_labels, downsample_in_first_stage=False)
    return ResNetForImageClassification(config)


def image_dataset(n: int, num_labels: int = 4, seed: int = 0, shift: float = 0.0) -> Dataset:
    """Random 1x16x16 images whose label is encoded by which quadrant is bright (learnable, deterministic)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_labels
    images = torch.randn(n, 1, 16, 16, generator=generator) * 0.3 + shift
    for index, label in enumerate(labels.tolist()):
        row, col = divmod(label % 4, 2)
        images[index, :, row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] += 1.5
    return Dataset.from_dict({"pixel_values": images.numpy(), "labels": labels.numpy()}).with_format("torch")


@pytest.fixture
def model() -> ResNetForImageClassification:
    return tiny_resnet()


@pytest.fixture
def original() -> Dataset:
    return image_dataset(64, seed=1)


@pytest.fixture
def restricted() -> Dataset:
    return image_dataset(64, seed=2, shift=-0.5)
