"""MLAC (meta-learned adversarial censoring, "self-destructing models"): block a harmful task in a text encoder.

Every step minimises, on the encoder ``model.base_model`` (e.g. ``BertModel``):

    CE(desired task)                                   the model's own head on an original-domain batch
    - w_h * mean_i min(CE_harm(theta'_i), log C)       a simulated adversary's held-out harmful loss after each
                                                       inner step i = 0..K (step 0 included)
    - w_l * min(CE of the best linear readout, log C)  ridge least-squares readout of the harmful labels

The simulated adversary attaches a fresh harmful head (``HarmfulReadout``: a linear layer on the encoder's
pooled output, what a probe or a re-initialised-head fine-tuning sees) and trains it, and the encoder if
``mlac_adapt_encoder``, for ``inner_steps`` steps with :class:`FineTuningSimulation`. The adversary's learning
rate (log scale) and its head initialisation are meta-learned to *help* the adversary (they descend the harmful
loss while the encoder ascends it). Each CE term is capped at chance (``log C``): past chance an encoder would
only flip labels, which an attacker undoes.

By default the meta-gradient is first-order (FOMAML): an **approximation** that ignores how the inner steps
depend on the encoder. ``mlac_second_order`` differentiates through plain-SGD inner steps instead
(``torch.func.functional_call``; memory grows with ``inner_steps``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_nft.data import num_labels
from hf_nft.methods._simulation import AdversaryStrategy, Batch, FineTuningSimulation, Forward
from hf_nft.methods.base import ProtectionMethod, check_labelled_dataset
from hf_nft.modeling import classifier_head
from hf_nft.registry import METHODS

RIDGE = 0.1
HEAD_PREFIX = "head."


class HarmfulReadout(nn.Module):
    """The encoder of a sequence classifier with a separate harmful-task head on its pooled output.

    Shares the encoder's parameters with the classifier (no copy); ``config.num_labels`` is the harmful task's
    label count so the simulation's head helpers find ``head``.
    """

    def __init__(self, classifier: nn.Module, labels: int) -> None:
        super().__init__()
        self.encoder = classifier.base_model
        hidden = classifier_head(classifier)[1].in_features
        self.head = nn.Linear(hidden, labels)
        self.config = SimpleNamespace(num_labels=labels)

    def features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The pooled representation the classifier's head reads (``pooler_output``, else the mean token)."""
        out = self.encoder(**inputs)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled
        mask = inputs["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.head(self.features(**inputs)))


def best_linear_readout_loss(features: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Held-out cross-entropy of the best ridge least-squares linear readout of the harmful labels.

    The readout (one-hot targets, bias column) is solved in closed form on the first half of the batch and scored
    on the second half, differentiably w.r.t. ``features``: how well the best linear map reads the harmful labels
    out of the representation ("linear mutual information" in the paper). Fitting and scoring on the same rows
    would measure over-fitting, not information, when there are fewer rows than feature dimensions. The ridge
    is relative to the features' scale (``RIDGE`` times the mean eigenvalue of the Gram matrix).
    """
    if features.shape[0] < 4:
        raise ValueError(f"The linear readout needs at least 4 rows (2 to fit, 2 to score), got {features.shape[0]}.")
    x = torch.cat([features, torch.ones_like(features[:, :1])], dim=1).float()
    half = x.shape[0] // 2
    fit, held_out = x[:half], x[half:]
    target = F.one_hot(labels[:half].long(), classes).float()
    gram = fit @ fit.T  # dual form: (n x n), n = half the batch, whatever the feature size
    ridge = RIDGE * gram.diagonal().mean().detach() + 1e-6
    dual = torch.linalg.solve(gram + ridge * torch.eye(half, dtype=x.dtype, device=x.device), target)
    return F.cross_entropy(held_out @ (fit.T @ dual), labels[half:].long())


@METHODS.register("mlac")
class Mlac(ProtectionMethod):
    """MLAC (Henderson et al., AIES 2023) for ``AutoModelForSequenceClassification`` text encoders."""

    name = "mlac"

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        self._batches: Iterator[Batch] | None = None
        self._generator = torch.Generator().manual_seed(self.args.seed)
        self._readout: HarmfulReadout | None = None
        self._log_lr: nn.Parameter | None = None
        self._head_init: dict[str, nn.Parameter] = {}
        self._meta_optimizer: torch.optim.Optimizer | None = None

    def validate(self) -> None:
        model = self.trainer.model
        _, head = classifier_head(model)
        if not hasattr(model, "base_model") or model.base_model is model:
            raise ValueError(f"MLAC needs a classifier with an encoder (base_model); got {type(model).__name__}.")
        check_labelled_dataset(self.trainer.train_dataset, "desired-task train_dataset", head.out_features)
        # The harmful head is MLAC's own: the restricted labels need not fit the model's (desired-task) head.
        limit = self.args.mlac_harmful_labels or math.inf
        check_labelled_dataset(self.trainer.restricted_dataset, "harmful-task restricted_dataset", limit)
        if self.harmful_labels() < 2:
            raise ValueError(f"The harmful task needs at least 2 classes, got {self.harmful_labels()}.")

    def harmful_labels(self) -> int:
        """Number of harmful-task classes (``mlac_harmful_labels``, else from the restricted dataset)."""
        return self.args.mlac_harmful_labels or num_labels(self.trainer.restricted_dataset)

    def settings(self) -> dict[str, Any]:
        keys = ("inner_steps", "adversary_batch_sizes", "query_batch_size", "mlac_harmful_weight",
                "mlac_linear_weight", "mlac_adversary_optimizer", "mlac_adversary_lr", "mlac_meta_lr",
                "mlac_adapt_encoder", "mlac_second_order", "learning_rate", "max_grad_norm", "max_steps")
        approximation = "second-order" if self.args.mlac_second_order else "first-order (FOMAML approximation)"
        return {"method": self.name, "meta_gradient": approximation, **{key: getattr(self.args, key) for key in keys}}

    def adversary_learning_rate(self) -> float:
        """The meta-learned learning rate of the simulated adversary, as it stands."""
        return math.exp(float(self._log_lr.detach())) if self._log_lr is not None else self.args.mlac_adversary_lr

    def _setup(self, model: nn.Module) -> HarmfulReadout:
        if self._readout is None:
            device = next(model.parameters()).device
            self._readout = HarmfulReadout(model, self.harmful_labels()).to(device)
            self._log_lr = nn.Parameter(torch.tensor(math.log(self.args.mlac_adversary_lr), device=device))
            self._head_init = {name: nn.Parameter(p.detach().clone()) for name, p in
                               self._readout.head.named_parameters()}
            self._meta_optimizer = torch.optim.Adam([self._log_lr, *self._head_init.values()],
                                                    lr=self.args.mlac_meta_lr)
            self._batches = self.trainer.restricted_batches()
        with torch.no_grad():
            for name, value in self._head_init.items():
                getattr(self._readout.head, name).copy_(value)
        return self._readout

    def _capped_harmful(self, forward: Forward, batch: Batch) -> torch.Tensor:
        """The encoder's objective on a harmful query batch: minus the adversary's CE, capped at chance."""
        ce = F.cross_entropy(forward(batch).logits.float(), batch["labels"].long())
        return -torch.clamp(ce, max=math.log(self.harmful_labels()))

    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        desired = model(**inputs).loss
        unwrapped = self.trainer.accelerator.unwrap_model(model)
        readout = self._setup(unwrapped)
        frozen = () if self.args.mlac_adapt_encoder else {n for n, _ in readout.named_parameters()
                                                          if not n.startswith(HEAD_PREFIX)}
        if self.args.mlac_second_order:
            harmful, metrics = self._second_order(readout, frozen)
        else:
            harmful, metrics = self._first_order(readout, frozen)
        linear, linear_ce = self._linear_term(readout)
        loss = desired + self.args.mlac_harmful_weight * harmful + self.args.mlac_linear_weight * linear
        self._meta_optimizer.step()
        self._meta_optimizer.zero_grad(set_to_none=True)
        metrics.update(desired_loss=desired.item(), linear_readout_ce=linear_ce,
                       adversary_lr=self.adversary_learning_rate())
        return loss, metrics

    def _strategy(self) -> AdversaryStrategy:
        sizes = self.args.adversary_batch_sizes
        size = sizes[int(torch.randint(len(sizes), (1,), generator=self._generator))]
        return AdversaryStrategy(self.args.mlac_adversary_optimizer, self.adversary_learning_rate(), size, False)

    def _first_order(self, readout: HarmfulReadout, frozen: Any) -> tuple[torch.Tensor, dict[str, float]]:
        simulation = FineTuningSimulation(readout, _cross_entropy, self._capped_harmful)
        result = simulation.run(self._strategy(), self._batches, self.args.inner_steps, self.args.query_batch_size,
                                self._generator, frozen=frozen)
        params = dict(readout.named_parameters())
        encoder = {n: g for n, g in result.meta_gradients.items() if not n.startswith(HEAD_PREFIX)}
        linear = sum((params[name] * grad).sum() for name, grad in encoder.items())
        mean = sum(result.suppression_losses) / len(result.suppression_losses)
        # The adversary's meta-parameters descend its own loss, i.e. ascend the (negated) suppression terms.
        for name, value in self._head_init.items():
            value.grad = -result.meta_gradients[HEAD_PREFIX + name]
        self._log_lr.grad = torch.tensor(-result.log_lr_sensitivity / len(result.suppression_losses),
                                         device=self._log_lr.device)
        metrics = {"harmful_ce_start": -result.suppression_losses[0], "harmful_ce_end": -result.suppression_losses[-1],
                   "harmful_ce_mean": -mean}
        return linear - linear.detach() + mean, metrics

    def _second_order(self, readout: HarmfulReadout, frozen: Any) -> tuple[torch.Tensor, dict[str, float]]:
        simulation = FineTuningSimulation(readout, _cross_entropy, self._capped_harmful)
        # The head starts from the meta-learned init (in the graph) and the learning rate is exp(log_lr).
        # Clones: the meta-parameters are stepped before the Trainer's backward runs through this graph.
        head = {HEAD_PREFIX + name: value.clone() for name, value in self._head_init.items()}
        terms = simulation.run_differentiable(self._log_lr.clone().exp(), self._batches, self.args.inner_steps,
                                              min(self.args.adversary_batch_sizes), self.args.query_batch_size,
                                              frozen=frozen, start=head)
        mean = torch.stack(terms).mean()
        meta = [self._log_lr, *self._head_init.values()]
        grads = torch.autograd.grad(mean, meta, retain_graph=True, allow_unused=True)
        for parameter, grad in zip(meta, grads):
            parameter.grad = None if grad is None else -grad  # the adversary's side: ascend the suppression terms
        metrics = {"harmful_ce_start": -float(terms[0]), "harmful_ce_end": -float(terms[-1]),
                   "harmful_ce_mean": -float(mean)}
        return mean, metrics

    def _linear_term(self, readout: HarmfulReadout) -> tuple[torch.Tensor, float]:
        """Minus the held-out CE of the best linear readout (capped at chance), on two restricted batches."""
        batches = [next(self._batches) for _ in range(2)]
        was_training = readout.training
        readout.eval()
        try:
            features = torch.cat([readout.features(**_inputs(batch)) for batch in batches])
        finally:
            readout.train(was_training)
        labels = torch.cat([batch["labels"] for batch in batches])
        ce = best_linear_readout_loss(features, labels, self.harmful_labels())
        return -torch.clamp(ce, max=math.log(self.harmful_labels())), ce.item()


def _inputs(batch: Batch) -> dict[str, torch.Tensor]:
    return {key: value for key, value in batch.items() if key != "labels" and torch.is_tensor(value)}


def _cross_entropy(forward: Forward, batch: Batch) -> torch.Tensor:
    """The simulated adversary's loss on the harmful task."""
    return F.cross_entropy(forward(batch).logits.float(), batch["labels"].long())
