"""The attacker's data: a labelled training budget and pre-collated evaluation batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import default_collate

from hf_nft.data import num_labels, per_class_subset

Batch = dict[str, Any]
Collate = Callable[[list[Batch]], Batch]
EVAL_BATCH_SIZE = 256


class Rows:
    """A small in-memory list of examples, served as shuffled batches or fixed chunks."""

    def __init__(self, rows: list[Batch], collate: Collate) -> None:
        self.rows = rows
        self.collate = collate

    def __len__(self) -> int:
        return len(self.rows)

    def chunks(self, size: int) -> list[Batch]:
        """The rows in order, collated in chunks of ``size``."""
        return [self.collate(self.rows[start : start + size]) for start in range(0, len(self.rows), size)]

    def shuffled(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """An endless stream of batches, reshuffled every epoch with ``generator``."""
        size = min(batch_size, len(self.rows))
        while True:
            order = torch.randperm(len(self.rows), generator=generator).tolist()
            for start in range(0, len(order) - size + 1, size):
                yield self.collate([self.rows[i] for i in order[start : start + size]])


class AttackData:
    """Restricted-domain training and evaluation data, prepared once and shared by many attack runs.

    ``collate_fn`` turns a list of examples into a batch (for text, e.g. ``DataCollatorWithPadding``);
    by default tensors are stacked (the datasets are put in torch format).
    """

    def __init__(self, train: Dataset, eval: Dataset, collate_fn: Collate | None = None) -> None:
        for label, dataset in (("restricted training", train), ("restricted evaluation", eval)):
            if len(dataset) == 0:
                raise ValueError(f"The {label} dataset is empty.")
        if collate_fn is None:
            train, eval = train.with_format("torch"), eval.with_format("torch")
        self.train = train
        self.eval = eval
        self.collate: Collate = collate_fn or default_collate
        self.num_labels = max(num_labels(train), num_labels(eval))
        self._budgets: dict[tuple[int | None, int], Rows] = {}

    def budget(self, examples_per_class: int | None, seed: int) -> Rows:
        """The attacker's training examples: ``examples_per_class`` of each label (all if ``None``)."""
        key = (examples_per_class, seed)
        if key not in self._budgets:
            subset = self.train
            if examples_per_class is not None:
                subset = per_class_subset(subset, examples_per_class, seed)
            self._budgets[key] = Rows(list(subset), self.collate)
        return self._budgets[key]

    @cached_property
    def eval_batches(self) -> list[Batch]:
        """The evaluation set, collated once in batches of :data:`EVAL_BATCH_SIZE`."""
        return collated(self.eval, self.collate)


def collated(dataset: Dataset, collate_fn: Collate | None = None) -> list[Batch]:
    """All of ``dataset`` in order, in batches of :data:`EVAL_BATCH_SIZE` (stacked tensors by default)."""
    if collate_fn is None:
        dataset = dataset.with_format("torch")
    return Rows(list(dataset), collate_fn or default_collate).chunks(EVAL_BATCH_SIZE)


def model_inputs(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of ``batch`` other than ``labels``, on ``device`` (the keyword arguments of a forward)."""
    return {key: value.to(device) for key, value in batch.items() if key != "labels" and torch.is_tensor(value)}
