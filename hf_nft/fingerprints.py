"""Content hashes that protection metadata records: of a folder's safetensors weights and of a dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors import safe_open


def weights_sha256(folder: str | Path) -> str:
    """sha256 over every tensor of the ``*.safetensors`` files in ``folder``, in name order: each tensor's
    name, dtype, shape and bytes. File metadata and sharding do not change it; one flipped weight does."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no *.safetensors weights to hash.")
    digest = hashlib.sha256()
    tensors = {}
    for file in files:
        handle = safe_open(str(file), framework="pt")
        tensors.update({name: handle for name in handle.keys()})  # noqa: SIM118 (safe_open is not a mapping)
    for name in sorted(tensors):
        tensor = tensors[name].get_tensor(name).contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over a dataset's columns in name order: each column's name, dtype, shape and values."""
    digest = hashlib.sha256()
    columns = dataset.with_format("numpy")[:]  # one batch of arrays (a single column would be read row by row)
    for column in sorted(columns):
        values = np.ascontiguousarray(columns[column])
        digest.update(f"{column}|{values.dtype}|{values.shape}|".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()
