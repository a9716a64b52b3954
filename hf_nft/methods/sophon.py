"""SOPHON for classifiers: fine-tuning suppression (FTS) alternated with normal-training reinforcement (NTR).

FTS: a simulated adversary, drawn from the adversary pool, fine-tunes the model on restricted batches for
``inner_steps`` steps; the non-fine-tunable loss (``inverse_ce`` or ``kl_uniform``) is evaluated at every point
of the trajectory including its start, and its first-order meta-gradient, averaged over the trajectory, is
applied to the released weights. NTR: the ordinary loss on an original-domain batch. A cycle is ``fts_steps``
FTS optimizer steps followed by ``ntr_steps`` NTR steps, weighted by ``alpha`` and ``beta``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_nft.losses import NFT_LOSS_FUNCTIONS
from hf_nft.methods._simulation import AdversaryPool, Batch, FineTuningSimulation, Forward
from hf_nft.methods.base import ProtectionMethod, check_labelled_dataset
from hf_nft.modeling import classifier_head
from hf_nft.registry import METHODS


@METHODS.register("sophon")
class Sophon(ProtectionMethod):
    """SOPHON (Deng et al., IEEE S&P 2024), first-order, for ``AutoModelFor*Classification`` models."""

    name = "sophon"
    # The layers a simulated adversary with ``reset_head`` re-initialises; None: the classification head.
    head_layers: tuple[str, ...] | None = None

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        self.pool = AdversaryPool(
            self.args.adversary_pool, self.args.adversary_batch_sizes, self.args.head_reset_probability,
            seed=self.args.seed,
        )
        self.nft_loss = NFT_LOSS_FUNCTIONS[self.args.nft_loss]
        self._batches: Iterator[Batch] | None = None
        self._generator = torch.Generator().manual_seed(self.args.seed)

    def validate(self) -> None:
        model = self.trainer.model
        _, head = classifier_head(model)
        check_labelled_dataset(self.trainer.train_dataset, "original-domain train_dataset", head.out_features)
        check_labelled_dataset(self.trainer.restricted_dataset, "restricted_dataset", head.out_features)

    def settings(self) -> dict[str, Any]:
        keys = ("nft_loss", "alpha", "beta", "fts_steps", "ntr_steps", "inner_steps", "adversary_pool",
                "adversary_batch_sizes", "head_reset_probability", "query_batch_size", "learning_rate",
                "max_grad_norm", "max_steps")
        return {"method": self.name, **{key: getattr(self.args, key) for key in keys}}

    def is_suppression_step(self) -> bool:
        """Whether the current optimizer step is an FTS step of the alternation cycle."""
        cycle = self.args.fts_steps + self.args.ntr_steps
        return self.trainer.state.global_step % cycle < self.args.fts_steps

    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        if not self.is_suppression_step():
            loss = self.reinforcement_loss(model, inputs)
            return self.args.beta * loss, {"ntr_loss": loss.item()}
        return self._suppression_loss(model)

    def reinforcement_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The ordinary loss on an original-domain batch (NTR); subclasses for other model kinds override it."""
        return model(**inputs).loss

    def adversary_loss(self, forward: Forward, batch: Batch) -> torch.Tensor:
        """The simulated adversary's ordinary loss on a restricted batch; subclasses override it."""
        return _cross_entropy(forward, batch)

    def _suppression_loss(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        unwrapped = self.trainer.accelerator.unwrap_model(model)
        if self._batches is None:
            self._batches = self.trainer.restricted_batches()
        simulation = FineTuningSimulation(unwrapped, self.adversary_loss, self._nft_loss_of_batch,
                                          head_layers=self.head_layers)
        strategy = self.pool.sample()
        result = simulation.run(strategy, self._batches, self.args.inner_steps, self.args.query_batch_size,
                                self._generator)
        # A surrogate whose gradient w.r.t. the released weights is the meta-gradient and whose value is the
        # mean suppression loss, so the Trainer's backward, clipping and logging apply unchanged.
        params = dict(unwrapped.named_parameters())
        linear = sum((params[name] * grad).sum() for name, grad in result.meta_gradients.items())
        mean_loss = sum(result.suppression_losses) / len(result.suppression_losses)
        surrogate = self.args.alpha * (linear - linear.detach() + mean_loss)
        metrics = {
            "fts_loss": mean_loss,
            "fts_loss_start": result.suppression_losses[0],
            "fts_loss_end": result.suppression_losses[-1],
            "fts_adversary_loss_end": result.adversary_losses[-1] if result.adversary_losses else float("nan"),
        }
        return surrogate, metrics

    def _nft_loss_of_batch(self, forward: Forward, batch: Batch) -> torch.Tensor:
        return self.nft_loss(forward(batch).logits, batch["labels"])


def _cross_entropy(forward: Forward, batch: Batch) -> torch.Tensor:
    """The adversary's ordinary classification loss."""
    return F.cross_entropy(forward(batch).logits.float(), batch["labels"].long())
