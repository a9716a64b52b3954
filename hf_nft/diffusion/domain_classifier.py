"""A small classifier telling the original domain's images from the restricted domain's, to score samples: the
fraction of a model's samples it assigns to the restricted domain (higher is better for the attacker).

It has a third class, ``neither``: images of neither domain, made from both domains' images by shuffling their
pixels (the same intensities without the structure) or by burying them in Gaussian noise. A two-class classifier
must call every image one of the two domains, and a sample that is only noise is then scored by its brightness:
such a classifier assigned 22-33% of pure Gaussian noise to the restricted domain (``uci-digits`` is the brighter
one), and 62% of the structureless samples of one protected model after fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, concatenate_datasets
from transformers import PreTrainedModel

DOMAIN_NAMES = ("original", "restricted", "neither")
ORIGINAL, RESTRICTED, NEITHER = range(3)
# A "neither" image buried in noise keeps this fraction (at most) of its signal: x * a + sqrt(1 - a^2) * noise.
NEITHER_SIGNAL = (0.1, 0.7)


def pixel_values(dataset: Dataset) -> np.ndarray:
    """A dataset's ``pixel_values`` as one float32 array."""
    return np.asarray(dataset.with_format("numpy")[:]["pixel_values"], dtype=np.float32)


def neither_images(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Images of neither domain made from ``images`` (in [-1, 1]): each one pixel-shuffled and each one buried in
    Gaussian noise, twice as many as given."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(images.reshape(len(images), -1), axis=1).reshape(images.shape)
    signal = rng.uniform(*NEITHER_SIGNAL, size=(len(images), 1, 1, 1)).astype(np.float32)
    noised = signal * images + np.sqrt(1 - signal ** 2) * rng.standard_normal(images.shape, dtype=np.float32)
    return np.concatenate([shuffled, np.clip(noised, -1, 1)]).astype(np.float32)


def domain_dataset(original: Dataset, restricted: Dataset, seed: int = 0) -> Dataset:
    """``original`` and ``restricted`` images labelled 0 and 1, and :func:`neither_images` of as many of each
    (at most as many original images as restricted ones, so that neither domain dominates) labelled 2."""
    original_pixels, restricted_pixels = pixel_values(original), pixel_values(restricted)
    sources = np.concatenate([original_pixels[: len(restricted_pixels)], restricted_pixels])
    features = Features({"pixel_values": original.features["pixel_values"],
                         "labels": ClassLabel(names=list(DOMAIN_NAMES))})
    parts = [Dataset.from_dict({"pixel_values": pixels, "labels": [label] * len(pixels)}, features=features)
             for label, pixels in ((ORIGINAL, original_pixels), (RESTRICTED, restricted_pixels),
                                   (NEITHER, neither_images(sources, seed)))]
    return concatenate_datasets(parts).with_format("torch")


def train_domain_classifier(original: Dataset, restricted: Dataset, output_dir: str | Path, epochs: float = 2.0,
                            seed: int = 0, progress: bool = True) -> PreTrainedModel:
    """The quickstart's small ConvNeXt trained to tell ``original``, ``restricted`` and neither domain apart."""
    from hf_nft.quickstart import pretrain, small_image_classifier

    model = small_image_classifier(num_labels=len(DOMAIN_NAMES), seed=seed)
    model.config.id2label = dict(enumerate(DOMAIN_NAMES))
    model.config.label2id = {name: index for index, name in enumerate(DOMAIN_NAMES)}
    pretrain(model, domain_dataset(original, restricted, seed), Path(output_dir), epochs=epochs, seed=seed,
             disable_tqdm=not progress)
    return model.eval()


@torch.no_grad()
def predicted_domains(classifier: PreTrainedModel, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The class ``classifier`` assigns to each of ``images`` (``(N, C, H, W)`` in [-1, 1])."""
    classifier.eval()
    device = next(classifier.parameters()).device
    return torch.cat([classifier(pixel_values=images[start: start + batch_size].to(device)).logits.argmax(-1).cpu()
                      for start in range(0, len(images), batch_size)])


def restricted_fraction(classifier: PreTrainedModel, images: torch.Tensor) -> float:
    """The fraction of ``images`` that ``classifier`` assigns to the restricted domain."""
    return (predicted_domains(classifier, images) == RESTRICTED).float().mean().item()


def domain_fractions(classifier: PreTrainedModel, images: torch.Tensor) -> dict[str, float]:
    """The fraction of ``images`` that ``classifier`` assigns to each of its classes, by class name."""
    counts = torch.bincount(predicted_domains(classifier, images), minlength=classifier.config.num_labels)
    return {classifier.config.id2label[index]: count / len(images) for index, count in enumerate(counts.tolist())}


def domain_accuracy(classifier: PreTrainedModel, original: Dataset, restricted: Dataset) -> float:
    """Accuracy of ``classifier`` on held-out images of both domains (an image called ``neither`` is an error)."""
    correct = total = 0
    for label, dataset in ((ORIGINAL, original), (RESTRICTED, restricted)):
        predictions = predicted_domains(classifier, torch.as_tensor(pixel_values(dataset)))
        correct, total = correct + int((predictions == label).sum()), total + len(predictions)
    return correct / total
