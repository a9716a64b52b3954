"""MLAC (meta-learned adversarial censoring, "self-destructing models"): block a harmful task in a text encoder.

Every step minimises, on the encoder ``model.base_model`` (e.g. ``BertModel``):

    CE(desired task)                                   the model's own head on an original-domain batch
    + w_d * KL(start model || model) on that batch     keeps the desired task's predictions (``mlac_distill_weight``)
    - w_h * mean_i min(CE_harm(theta'_i), log C)       a simulated adversary's held-out harmful loss after each
                                                       inner step i = 0..K (step 0 included)
    + w_l * mean_l log(1 + J_l)                        the linear information left about the harmful labels in the
                                                       mean token of each readout layer l

The simulated adversary attaches a fresh harmful head (``HarmfulReadout``: a linear layer on the encoder's
pooled output, what a probe or a re-initialised-head fine-tuning sees) and trains it, and the encoder if
``mlac_adapt_encoder``, for ``inner_steps`` steps with :class:`FineTuningSimulation`. The adversary's learning
rate (log scale) and its head initialisation are meta-learned to *help* the adversary (they descend the harmful
loss while the encoder ascends it). Each CE term is capped at chance (``log C``): past chance an encoder would
only flip labels, which an attacker undoes.

The readout term is the paper's best-linear-readout term in a form that keeps a gradient at every layer:
``J`` is the ridge-regularised Fisher criterion of the harmful labels (:func:`fisher_separability`; for Gaussian
classes the best linear readout's accuracy grows with it), measured in every layer of ``mlac_readout_layers``
(default all of them), so the information is removed where it enters, not only where the last layer hides it.

By default the meta-gradient is first-order (FOMAML): an **approximation** that ignores how the inner steps
depend on the encoder. ``mlac_second_order`` differentiates through plain-SGD inner steps instead
(``torch.func.functional_call``; memory grows with ``inner_steps``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_nft.data import num_labels
from hf_nft.methods._simulation import AdversaryStrategy, Batch, FineTuningSimulation, Forward
from hf_nft.methods.base import ProtectionMethod, check_labelled_dataset
from hf_nft.methods.class_statistics import class_means
from hf_nft.methods.embedding_erasure import EmbeddingEraser, input_embedding_layers
from hf_nft.methods.unit_pruning import FeedForwardPruner, feed_forward_layers
from hf_nft.modeling import classifier_head
from hf_nft.registry import METHODS
from hf_nft.text_pooling import masked_mean

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
        return masked_mean(out.last_hidden_state, inputs.get("attention_mask"))

    def layer_means(self, layers: Sequence[int], **inputs: torch.Tensor) -> list[torch.Tensor]:
        """The mean token of each hidden state in ``layers`` (0 = the embeddings' output)."""
        hidden = self.encoder(**inputs, output_hidden_states=True).hidden_states
        return [masked_mean(hidden[layer], inputs.get("attention_mask")) for layer in layers]

    def forward(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.head(self.features(**inputs)))


def fisher_separability(features: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """The ridge-regularised Fisher criterion ``trace((S_w + r I)^-1 S_b)`` of ``labels`` in ``features``.

    ``S_w`` and ``S_b`` are the within- and between-class scatter of the rows; for two Gaussian classes with a
    shared covariance ``J`` is the squared Mahalanobis distance of the class means, and the best linear readout's
    accuracy is ``Phi(sqrt(J) / 2)``. It is invariant to the features' scale (the ridge ``r`` is ``RIDGE`` times
    the mean within-class variance), so shrinking the features cannot fake a low value, and it stays
    differentiable at every value (a capped readout loss has no gradient once at chance).
    """
    if features.shape[0] < 4:
        raise ValueError(f"The separability term needs at least 4 rows, got {features.shape[0]}.")
    x = features.float()
    stats = class_means(x, labels, classes)
    means, counts = stats.means, stats.counts
    within = stats.within_scatter(x)
    between = (means - x.mean(0)) * (counts[:, None] / x.shape[0]).sqrt()
    ridge = RIDGE * within.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return (between.T * torch.linalg.solve(within + ridge * eye, between.T)).sum()


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
        self._teacher: nn.Module | None = None
        self.eraser: EmbeddingEraser | None = None
        self.pruner: FeedForwardPruner | None = None
        trainer.add_callback(_RemovalHooks(self))

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
        depth = model.base_model.config.num_hidden_layers
        wrong = [layer for layer in self.args.mlac_readout_layers or () if not 0 <= layer <= depth]
        if wrong:
            raise ValueError(f"mlac_readout_layers {wrong} do not exist: the encoder has hidden states 0..{depth}.")
        if self.args.mlac_erasure_rounds:
            input_embedding_layers(model.base_model)
        if self.args.mlac_prune_fraction:
            FeedForwardPruner(model.base_model, self.prune_layers(), self.args.mlac_prune_fraction)

    def readout_layers(self) -> list[int]:
        """The hidden states the readout term measures (``mlac_readout_layers``, else every transformer layer)."""
        depth = self.trainer.model.base_model.config.num_hidden_layers
        return list(self.args.mlac_readout_layers or range(1, depth + 1))

    def prune_layers(self) -> list[int]:
        """The transformer layers whose feed-forward units are pruned (``mlac_prune_layers``, else all)."""
        if self.args.mlac_prune_layers is not None:
            return list(self.args.mlac_prune_layers)
        return list(range(len(feed_forward_layers(self.trainer.model.base_model))))

    def harmful_labels(self) -> int:
        """Number of harmful-task classes (``mlac_harmful_labels``, else from the restricted dataset)."""
        return self.args.mlac_harmful_labels or num_labels(self.trainer.restricted_dataset)

    def settings(self) -> dict[str, Any]:
        keys = ("inner_steps", "adversary_batch_sizes", "query_batch_size", "mlac_harmful_weight",
                "mlac_linear_weight", "mlac_readout_batches", "mlac_distill_weight", "mlac_adversary_optimizer",
                "mlac_adversary_lr", "mlac_meta_lr", "mlac_adapt_encoder", "mlac_second_order", "mlac_erasure_rounds",
                "mlac_prune_fraction", "learning_rate", "max_grad_norm", "max_steps")
        approximation = "second-order" if self.args.mlac_second_order else "first-order (FOMAML approximation)"
        pruned = {"mlac_prune_layers": self.prune_layers()} if self.args.mlac_prune_fraction else {}
        return {"method": self.name, "meta_gradient": approximation, "mlac_readout_layers": self.readout_layers(),
                **pruned,
                **{key: getattr(self.args, key) for key in keys}}

    def adversary_learning_rate(self) -> float:
        """The meta-learned learning rate of the simulated adversary, as it stands."""
        return math.exp(float(self._log_lr.detach())) if self._log_lr is not None else self.args.mlac_adversary_lr

    def begin_training(self) -> None:
        """Freeze the distillation teacher, then erase the harmful directions from the word embeddings and prune
        the feed-forward units that track the harmful task."""
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        self._freeze_teacher(model)
        removing = self.args.mlac_erasure_rounds or self.args.mlac_prune_fraction
        if not removing or self.eraser is not None or self.pruner is not None:
            return
        loader = self.trainer._get_dataloader(self.trainer.restricted_dataset, "restricted",
                                              self.args.per_device_eval_batch_size, sampler_fn=SequentialSampler)
        batches = [self.trainer._prepare_inputs(batch) for batch in loader]
        if self.args.mlac_erasure_rounds:
            self.eraser = EmbeddingEraser(model.base_model)
            self.eraser.fit(batches, self.args.mlac_erasure_rounds, self.harmful_labels())
        if self.args.mlac_prune_fraction:
            self.pruner = FeedForwardPruner(model.base_model, self.prune_layers(), self.args.mlac_prune_fraction)
            self.pruner.fit(batches, self.harmful_labels())

    def _freeze_teacher(self, model: nn.Module) -> None:
        """Keep a frozen copy of ``model`` as the distillation teacher (once; only with distillation on)."""
        if self.args.mlac_distill_weight and self._teacher is None:
            self._teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def keep_removed(self) -> None:
        """Re-apply the erasure and the pruning (after an optimizer step)."""
        for removal in (self.eraser, self.pruner):
            if removal is not None:
                removal.apply()

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
            self._freeze_teacher(model)
        with torch.no_grad():
            for name, value in self._head_init.items():
                getattr(self._readout.head, name).copy_(value)
        return self._readout

    def _capped_harmful(self, forward: Forward, batch: Batch) -> torch.Tensor:
        """The encoder's objective on a harmful query batch: minus the adversary's CE, capped at chance."""
        ce = F.cross_entropy(forward(batch).logits.float(), batch["labels"].long())
        return -torch.clamp(ce, max=math.log(self.harmful_labels()))

    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = model(**inputs)
        unwrapped = self.trainer.accelerator.unwrap_model(model)
        readout = self._setup(unwrapped)
        desired = outputs.loss + self.args.mlac_distill_weight * self._distillation(outputs.logits, inputs)
        frozen = () if self.args.mlac_adapt_encoder else {n for n, _ in readout.named_parameters()
                                                          if not n.startswith(HEAD_PREFIX)}
        if self.args.mlac_second_order:
            harmful, metrics = self._second_order(readout, frozen)
        else:
            harmful, metrics = self._first_order(readout, frozen)
        readout_term, separability = self._readout_term(readout)
        loss = desired + self.args.mlac_harmful_weight * harmful + self.args.mlac_linear_weight * readout_term
        self._meta_optimizer.step()
        self._meta_optimizer.zero_grad(set_to_none=True)
        metrics.update(desired_loss=desired.item(), readout_separability=separability,
                       adversary_lr=self.adversary_learning_rate())
        return loss, metrics

    def _distillation(self, logits: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """KL from the model as blocking started to the model, on the desired batch (0 without a teacher)."""
        if self._teacher is None:
            return logits.new_zeros(())
        with torch.no_grad():
            target = F.log_softmax(self._teacher(**_inputs(inputs)).logits.float(), -1)
        return F.kl_div(F.log_softmax(logits.float(), -1), target, log_target=True, reduction="batchmean")

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

    def _readout_term(self, readout: HarmfulReadout) -> tuple[torch.Tensor, float]:
        """Mean over the readout layers of ``log(1 + J)`` on ``mlac_readout_batches`` restricted batches (dropout
        off), and the mean J."""
        batches = [next(self._batches) for _ in range(self.args.mlac_readout_batches)]
        was_training = readout.training
        readout.eval()
        try:
            per_batch = [readout.layer_means(self.readout_layers(), **_inputs(batch)) for batch in batches]
        finally:
            readout.train(was_training)
        labels = torch.cat([batch["labels"] for batch in batches])
        values = torch.stack([fisher_separability(torch.cat(layer), labels, self.harmful_labels())
                              for layer in zip(*per_batch)])
        return values.log1p().mean(), values.mean().item()


class _RemovalHooks(TrainerCallback):
    """Runs :meth:`Mlac.begin_training` as training starts and :meth:`Mlac.keep_removed` after every step."""

    def __init__(self, method: Mlac) -> None:
        self.method = method

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.method.begin_training()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.method.keep_removed()


def _inputs(batch: Batch) -> dict[str, torch.Tensor]:
    return {key: value for key, value in batch.items() if key != "labels" and torch.is_tensor(value)}


def _cross_entropy(forward: Forward, batch: Batch) -> torch.Tensor:
    """The simulated adversary's loss on the harmful task."""
    return F.cross_entropy(forward(batch).logits.float(), batch["labels"].long())
