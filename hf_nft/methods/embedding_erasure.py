"""Erase a harmful task's linear directions from a text encoder's input (word) embeddings.

What a model knows about a task starts in its vocabulary: in a pre-trained encoder, words of the same sentiment
(say) sit in the same directions of the word-embedding matrix, so the mean token of the embeddings' output
already carries the task, and any probe or fine-tuning can start from it. Training terms measured on the
blocking texts only move the rows of the words those texts contain; held-out texts bring other words.

:class:`EmbeddingEraser` removes the task from *every* row at once, by iterative nullspace projection
(Ravfogel et al., ACL 2020) on the mean token of the embeddings' output: fit the ridge Fisher (LDA) directions
of the harmful labels (one per class, spanning the ``C - 1`` between-class directions), map them through the
embeddings' LayerNorm gain into the word-embedding space, project them out of the whole matrix, and repeat on
the erased embeddings. The removed component of each word is lost, not hidden (a projection is not invertible);
:meth:`EmbeddingEraser.apply` re-applies the projection, so training keeps the rows in the erased subspace's
complement.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from hf_nft.methods.class_statistics import class_means
from hf_nft.text_pooling import masked_mean

# The ridge added to the within-class scatter, as a fraction of each feature's own within-class variance: the
# directions are those of a Fisher discriminant on standardised features, shrunk towards the class-mean difference.
ERASURE_RIDGE = 1.0


def input_embedding_layers(encoder: nn.Module) -> tuple[nn.Module, nn.Embedding]:
    """The encoder's embeddings module (its output is hidden state 0) and its word-embedding table."""
    embeddings = getattr(encoder, "embeddings", None)
    words = getattr(embeddings, "word_embeddings", None)
    if words is None or not hasattr(words, "weight"):
        raise ValueError(f"Embedding erasure needs a BERT-like encoder with embeddings.word_embeddings; "
                         f"{type(encoder).__name__} has none.")
    return embeddings, words


def discriminant_directions(features: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """The ridge Fisher discriminant direction of each class of ``labels`` in ``features`` (rows; they span the
    ``C - 1`` between-class directions)."""
    x = features.double()
    stats = class_means(x, labels, classes)
    within = stats.within_scatter(x)
    ridge = torch.diag(ERASURE_RIDGE * within.diagonal().clamp_min(1e-12))
    return torch.linalg.solve(within + ridge, (stats.means - x.mean(0)).T).T.float()


class EmbeddingEraser:
    """Finds a harmful task's directions in an encoder's word embeddings and keeps them erased."""

    def __init__(self, encoder: nn.Module) -> None:
        self.embeddings, self.words = input_embedding_layers(encoder)
        self.basis = self.words.weight.new_zeros((0, self.words.embedding_dim))

    @torch.no_grad()
    def fit(self, batches: Iterable[dict[str, torch.Tensor]], rounds: int, classes: int) -> None:
        """``rounds`` rounds of nullspace projection on the labelled ``batches`` (re-read every round)."""
        batches = list(batches)
        if rounds < 0:
            raise ValueError(f"rounds must be non-negative, got {rounds}.")
        if rounds and not batches:
            raise ValueError("Embedding erasure needs labelled harmful-task batches; got none.")
        was_training = self.embeddings.training
        self.embeddings.eval()
        try:
            for _ in range(rounds):
                features = torch.cat([self._mean_state(batch) for batch in batches])
                labels = torch.cat([batch["labels"] for batch in batches])
                directions = discriminant_directions(features, labels, classes)
                self._add(self._to_word_space(directions))
                self.apply()
        finally:
            self.embeddings.train(was_training)

    def _mean_state(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        states = self.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        return masked_mean(states, batch.get("attention_mask")).float().cpu()

    def _to_word_space(self, directions: torch.Tensor) -> torch.Tensor:
        """Directions of the normalised embeddings' output as directions of the word embeddings.

        The embeddings' LayerNorm scales each coordinate by its gain and removes the mean across coordinates, so
        a readout ``w`` of its output reads ``w * gain`` (centred) of the summed embeddings.
        """
        norm = getattr(self.embeddings, "LayerNorm", None)
        gain = norm.weight.detach().float().cpu() if getattr(norm, "weight", None) is not None else 1.0
        mapped = directions * gain
        return mapped - mapped.mean(1, keepdim=True)

    def _add(self, directions: torch.Tensor) -> None:
        directions = directions.to(self.basis)
        directions = directions - (directions @ self.basis.T) @ self.basis
        basis, singular, _ = torch.linalg.svd(directions.T.double(), full_matrices=False)
        kept = basis.T[singular > 1e-6 * singular.max().clamp_min(1e-30)].to(self.basis)
        self.basis = torch.cat([self.basis, kept])

    @torch.no_grad()
    def apply(self) -> None:
        """Project the erased directions out of every word embedding (in place)."""
        if len(self.basis):
            weight = self.words.weight
            basis = self.basis.to(weight)
            weight -= (weight @ basis.T) @ basis
