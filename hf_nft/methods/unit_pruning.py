"""Prune the feed-forward units of a text encoder whose activation tracks a harmful task.

A linear erasure of the word embeddings (:mod:`hf_nft.methods.embedding_erasure`) leaves each word its identity,
and the pre-trained feed-forward layers, key-value memories keyed on words, decode the task from it again a layer
or two up. :class:`FeedForwardPruner` removes those memories: in each chosen transformer layer (in order, each
measured after the ones below are pruned) it scores every intermediate unit by the one-way ANOVA F statistic of
its mean activation over a text's tokens against the harmful labels, and zeroes the ``fraction`` with the highest
scores (the unit's input row and bias and its output column). A zeroed unit has no gradient (its activation and
its output weights are both zero), so fine-tuning does not regrow it; :meth:`FeedForwardPruner.apply` re-zeroes
the units after every training step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from hf_nft.methods.class_statistics import class_means
from hf_nft.text_pooling import masked_mean


def feed_forward_layers(encoder: nn.Module) -> list[nn.Module]:
    """The transformer layers of a BERT-like encoder (``encoder.layer[i]`` with ``intermediate.dense`` and
    ``output.dense``)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(layer, "intermediate") and hasattr(layer, "output") for layer in layers):
        raise ValueError(f"Feed-forward pruning needs a BERT-like encoder (encoder.layer[i].intermediate/.output); "
                         f"{type(encoder).__name__} has none.")
    return list(layers)


def anova_f(features: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Per column of ``features``: the one-way ANOVA F statistic of ``labels`` (between- over within-class
    variance, each per degree of freedom)."""
    x = features.double()
    means, counts, row_means = class_means(x, labels, classes)
    groups = len(counts)
    between = (counts[:, None] * (means - x.mean(0)) ** 2).sum(0) / max(groups - 1, 1)
    within = ((x - row_means) ** 2).sum(0) / max(x.shape[0] - groups, 1)
    return (between / within.clamp_min(1e-12)).float()


class FeedForwardPruner:
    """Finds and keeps zeroed the feed-forward units of ``layers`` that track the harmful labels."""

    def __init__(self, encoder: nn.Module, layers: Sequence[int], fraction: float) -> None:
        if not 0 < fraction < 1:
            raise ValueError(f"The pruned fraction must be in (0, 1), got {fraction}.")
        available = feed_forward_layers(encoder)
        wrong = [index for index in layers if not 0 <= index < len(available)]
        if wrong:
            raise ValueError(f"Feed-forward layers {wrong} do not exist: the encoder has layers 0..{len(available) - 1}.")
        self.encoder = encoder
        self.layers = {index: available[index] for index in layers}
        self.fraction = fraction
        self.pruned: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def fit(self, batches: Iterable[dict[str, torch.Tensor]], classes: int) -> None:
        """Score and prune the units of each layer in turn on the labelled ``batches``."""
        batches = list(batches)
        if not batches:
            raise ValueError("Feed-forward pruning needs labelled harmful-task batches; got none.")
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            for index, layer in self.layers.items():
                activations = self._mean_activations(layer, batches)
                scores = anova_f(activations, torch.cat([batch["labels"].cpu() for batch in batches]), classes)
                count = max(1, int(self.fraction * scores.numel()))
                self.pruned[index] = scores.argsort(descending=True)[:count]
                self.apply()
        finally:
            self.encoder.train(was_training)

    def _mean_activations(self, layer: nn.Module, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = layer.intermediate.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            rows = []
            for batch in batches:
                captured.clear()
                self.encoder(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                             token_type_ids=batch.get("token_type_ids"))
                rows.append(masked_mean(captured[0], batch.get("attention_mask")).float().cpu())
        finally:
            hook.remove()
        return torch.cat(rows)

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned units (input rows, biases, output columns) in place."""
        for index, units in self.pruned.items():
            layer = self.layers[index]
            units = units.to(layer.intermediate.dense.weight.device)
            layer.intermediate.dense.weight[units] = 0
            if layer.intermediate.dense.bias is not None:
                layer.intermediate.dense.bias[units] = 0
            layer.output.dense.weight[:, units] = 0
