"""EncoderLock (Ding et al., 2024): make a classifier's encoder useless to *probe* on a prohibited domain while
the authorized domain keeps working, by updating only a few selected weights.

The encoder is everything that feeds the classification head (its input is what a probe trains on).
Training runs in rounds of ``encoderlock_round_steps`` optimizer steps. Each round starts by

1. **self-challenging**: a linear probe and an MLP probe are trained from scratch on the current encoder's
   features of the prohibited data (90%) and scored on the other 10%; the stronger becomes the round's
   challenger;
2. **domain-aware weight selection**: every encoder weight (tensors of 2+ dimensions; biases, norms and the
   head excluded) is scored by ``|g_prohibited| / (|g_authorized| + 1e-8)``, the gradients of the challenger's
   loss on prohibited data and of the model's own loss on authorized data; the ``encoderlock_layers_per_round``
   tensors with the highest score contribute their ``encoderlock_weights_per_round`` best weights to the
   update mask, which is OR-accumulated over rounds.

Every step then minimises ``L_auth + log(1 + a * L_auth / L_prohibited)`` (``a = encoderlock_ratio_weight``)
with the gradients masked to the selected weights; unselected weights are also restored after every step,
so no optimizer (weight decay included) moves them; BatchNorm layers run on their frozen running statistics. ``settings()`` reports how many weights changed.

Settings (``encoderlock_setting``):

- ``supervised``: ``restricted_dataset`` holds labelled prohibited data;
- ``unsupervised``: ``restricted_dataset`` holds prohibited inputs; any labels are ignored. Pseudo-labels are
  the k-means clusters of the *unprotected* encoder's (normalised) features, which is what an attacker with
  labels would exploit; the challengers and the prohibited loss use them;
- ``zero-shot``: no prohibited data. Stand-ins are synthesised from a description of the prohibited domain
  (:data:`ZERO_SHOT_TRANSFORMS`): ``blocky`` re-renders the authorized images the way the prohibited ones look,
  keeping their labels (the content is the same, only the rendering differs); ``moral-foundations`` writes
  political statements whose moral vocabulary follows the party, for text (:mod:`hf_nft.text_standins`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_nft.data import num_labels
from hf_nft.methods._masking import freeze_norm_statistics
from hf_nft.methods._synthesis import blocky
from hf_nft.methods.base import ProtectionMethod, check_labelled_dataset
from hf_nft.modeling import classifier_head
from hf_nft.registry import METHODS
from hf_nft.text_standins import moral_foundation_standins

Batch = dict[str, Any]
PROBE_KINDS = ("linear", "mlp")
_PROBE_LEARNING_RATES = {"linear": 1e-2, "mlp": 3e-3}
_PROBE_BATCH = 64
_MAX_STANDINS = 2048


def blocky_standins(dataset: Dataset, tokenizer: Any = None) -> Dataset:
    """Images at half resolution upsampled by repetition (the look of 8x8 ``uci-digits`` scans), same labels."""
    if "pixel_values" not in dataset.column_names:
        raise ValueError(
            "The zero-shot transform 'blocky' needs image data with a 'pixel_values' column "
            f"(train_dataset has {dataset.column_names})."
        )
    rows = dataset.with_format("torch")[:]
    pixels = blocky(rows["pixel_values"].float())
    return Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": rows["labels"].numpy()},
                             features=dataset.features).with_format("torch")


# Zero-shot: how stand-in prohibited data is synthesised (from the authorized train_dataset and the tokenizer).
ZERO_SHOT_TRANSFORMS: dict[str, Callable[[Dataset, Any], Dataset]] = {
    "blocky": blocky_standins,
    "moral-foundations": moral_foundation_standins,
}


class KeepUnselectedCallback(TrainerCallback):
    """Restore unselected encoder weights after every optimizer step; drop the gradient hooks at the end."""

    def __init__(self, method: EncoderLock) -> None:
        self.method = method

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self.method.restore_unselected()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self.method.finish()


def lockable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The encoder weights EncoderLock may select: parameters of 2+ dimensions outside the classification head.

    Biases, LayerNorm/BatchNorm scales and the head are excluded, and so are embedding tables: a token's row has
    a zero gradient whenever the token is absent from a batch, so the gradient ratio would single out tokens that
    happen to occur in the prohibited batch only, not weights that matter to the domain.
    """
    head_name, _ = classifier_head(model)
    embeddings = {f"{name}.weight" if name else "weight" for name, module in model.named_modules()
                  if isinstance(module, nn.Embedding)}
    return {
        name: parameter for name, parameter in model.named_parameters()
        if parameter.dim() >= 2 and not name.startswith(f"{head_name}.") and name not in embeddings
    }


def encode(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The classification head's input for ``batch`` (the features a probe sees), with gradients."""
    _, head = classifier_head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        model(**{key: value for key, value in batch.items() if key != "labels"})
    finally:
        hook.remove()
    return captured[0].float()


def make_probe(kind: str, features: int, classes: int, hidden: int) -> nn.Module:
    """A fresh probe of the attack harness's shapes: ``linear`` or a two-layer ReLU ``mlp``."""
    if kind == "linear":
        return nn.Linear(features, classes)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def train_probe(kind: str, features: torch.Tensor, labels: torch.Tensor, classes: int, steps: int, hidden: int,
                generator: torch.Generator) -> nn.Module:
    """A probe trained from scratch with Adam on fixed features (mini-batches of 64)."""
    probe = make_probe(kind, features.shape[1], classes, hidden).to(features.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=_PROBE_LEARNING_RATES[kind])
    with torch.enable_grad():
        for _ in range(steps):
            index = torch.randint(len(features), (min(_PROBE_BATCH, len(features)),), generator=generator)
            loss = F.cross_entropy(probe(features[index]), labels[index.to(labels.device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return probe.eval().requires_grad_(False)


@torch.no_grad()
def probe_accuracy(probe: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of ``probe`` on fixed features."""
    return float((probe(features).argmax(-1) == labels).float().mean())


@METHODS.register("encoderlock")
class EncoderLock(ProtectionMethod):
    """EncoderLock for ``AutoModelFor*Classification`` models: masked updates of selected encoder weights
    against a challenger probe retrained every round."""

    name = "encoderlock"

    def __init__(self, trainer: Any) -> None:
        super().__init__(trainer)
        self.setting = self.args.encoderlock_setting
        self.model = trainer.accelerator.unwrap_model(trainer.model)
        self.weights = lockable_weights(self.model)
        self.masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in self.weights.items()}
        self.original = {name: p.detach().clone() for name, p in self.weights.items()}
        self.generator = torch.Generator().manual_seed(self.args.seed)
        self.challenger: nn.Module | None = None
        self.challenger_kind = ""
        self.challenger_accuracy = float("nan")
        self.probe_accuracies: dict[str, float] = {}
        self.rounds = 0
        self._hooks: list[Any] = []
        self._prohibited: dict[str, Any] | None = None
        self._batches: Iterator[Batch] | None = None
        trainer.add_callback(KeepUnselectedCallback(self))

    # ---- validation and data -------------------------------------------------------------------------------

    def validate(self) -> None:
        _, head = classifier_head(self.model)
        if not self.weights:
            raise ValueError(
                f"{type(self.model).__name__} has no encoder to probe: no weight of 2+ dimensions feeds its "
                "classification head, so there is nothing for EncoderLock to lock."
            )
        check_labelled_dataset(self.trainer.train_dataset, "authorized-domain train_dataset", head.out_features)
        restricted = self.trainer.restricted_dataset
        if self.setting == "supervised":
            if restricted is None:
                raise ValueError(
                    "EncoderLock's supervised setting needs labelled prohibited data (restricted_dataset); got None. "
                    "Without labels use encoderlock_setting='unsupervised'; without data, 'zero-shot'."
                )
            check_labelled_dataset(restricted, "prohibited-domain restricted_dataset", head.out_features)
        elif self.setting == "unsupervised":
            if restricted is None or len(restricted) == 0:
                raise ValueError("EncoderLock's unsupervised setting needs prohibited inputs (restricted_dataset).")
        else:
            if restricted is not None:
                raise ValueError(
                    "EncoderLock's zero-shot setting uses no prohibited data, but restricted_dataset was given: "
                    "use the supervised or unsupervised setting, or pass restricted_dataset=None."
                )
            transform = self.args.encoderlock_zero_shot_transform
            if transform not in ZERO_SHOT_TRANSFORMS:
                raise ValueError(
                    f"Unknown encoderlock_zero_shot_transform {transform!r}; expected one of {list(ZERO_SHOT_TRANSFORMS)}."
                )
            ZERO_SHOT_TRANSFORMS[transform](self.trainer.train_dataset.select(range(1)), self.trainer.processing_class)
        self._attach()

    def _attach(self) -> None:
        """Freeze everything but the lockable weights and mask their gradients to the selection."""
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name in self.weights)
        for name, parameter in self.weights.items():
            self._hooks.append(parameter.register_hook(lambda grad, name=name: grad * self.masks[name]))

    def settings(self) -> dict[str, Any]:
        keys = ("encoderlock_setting", "encoderlock_round_steps", "encoderlock_weights_per_round",
                "encoderlock_layers_per_round", "encoderlock_ratio_weight", "encoderlock_probe_steps",
                "encoderlock_probe_hidden_size", "encoderlock_score_examples", "encoderlock_clusters",
                "encoderlock_zero_shot_transform", "learning_rate", "max_steps")
        return {"method": self.name, **{key: getattr(self.args, key) for key in keys}, **self.changes()}

    def _collate(self, dataset: Dataset, indices: list[int]) -> Batch:
        """Rows ``indices`` of ``dataset`` (model inputs and labels only), collated and on the model's device."""
        accepted = set(inspect.signature(self.model.forward).parameters) | {"labels"}
        rows = [{key: value for key, value in dataset[i].items() if key in accepted} for i in indices]
        batch = self.trainer.data_collator(rows)
        device = next(self.model.parameters()).device
        return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}

    def _batched(self, dataset: Dataset, indices: list[int], size: int = 256) -> list[Batch]:
        return [self._collate(dataset, indices[start:start + size]) for start in range(0, len(indices), size)]

    @torch.no_grad()
    def _features(self, batches: list[Batch]) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return torch.cat([encode(self.model, batch) for batch in batches])
        finally:
            self.model.train(was_training)

    def _prepare_prohibited(self) -> dict[str, Any]:
        """The prohibited pool for this setting (dataset, labels, class count) and its 90/10 probe split."""
        restricted = self.trainer.restricted_dataset
        if self.setting == "zero-shot":
            source = self.trainer.train_dataset
            count = min(len(source), _MAX_STANDINS)
            order = torch.randperm(len(source), generator=self.generator)[:count].sort().values.tolist()
            restricted = ZERO_SHOT_TRANSFORMS[self.args.encoderlock_zero_shot_transform](
                source.select(order), self.trainer.processing_class)
        if self.setting == "unsupervised":
            restricted = restricted.remove_columns([c for c in restricted.column_names if c == "labels"])
            labels, classes = self._pseudo_labels(restricted)
        else:
            labels = torch.as_tensor(np.asarray(restricted.with_format(None)[:]["labels"]), dtype=torch.long)
            classes = num_labels(restricted)
        order = torch.randperm(len(restricted), generator=self.generator).tolist()
        held_out = max(1, len(order) // 10)
        return {"dataset": restricted, "labels": labels, "classes": classes,
                "train": order[held_out:], "val": order[:held_out]}

    def _pseudo_labels(self, dataset: Dataset) -> tuple[torch.Tensor, int]:
        """k-means clusters of the unprotected encoder's normalised features of ``dataset``."""
        from sklearn.cluster import KMeans

        clusters = self.args.encoderlock_clusters or classifier_head(self.model)[1].out_features
        if len(dataset) < clusters:
            raise ValueError(f"EncoderLock unsupervised: {len(dataset)} prohibited examples for {clusters} clusters.")
        features = F.normalize(self._features(self._batched(dataset, list(range(len(dataset))))), dim=-1)
        kmeans = KMeans(n_clusters=clusters, n_init=4, random_state=self.args.seed).fit(features.cpu().numpy())
        return torch.as_tensor(kmeans.labels_, dtype=torch.long), clusters

    def _prohibited_batches(self) -> Iterator[Batch]:
        """An endless stream of shuffled prohibited batches (labels: true, pseudo or stand-in)."""
        pool = self._prohibited
        size = min(self.args.per_device_train_batch_size, len(pool["labels"]))
        while True:
            order = torch.randperm(len(pool["labels"]), generator=self.generator).tolist()
            for start in range(0, len(order) - size + 1, size):
                indices = order[start:start + size]
                batch = self._collate(pool["dataset"], indices)
                batch["labels"] = pool["labels"][indices].to(next(self.model.parameters()).device)
                yield batch

    # ---- a round: challenger, then weight selection ------------------------------------------------------

    def _train_challenger(self) -> None:
        """Probe the current encoder with a linear and an MLP head; keep the stronger on held-out data."""
        pool = self._prohibited
        device = next(self.model.parameters()).device
        features = {part: self._features(self._batched(pool["dataset"], pool[part])) for part in ("train", "val")}
        labels = {part: pool["labels"][pool[part]].to(device) for part in ("train", "val")}
        self.probe_accuracies = {}
        probes = {}
        for kind in PROBE_KINDS:
            probes[kind] = train_probe(kind, features["train"], labels["train"], pool["classes"],
                                       self.args.encoderlock_probe_steps, self.args.encoderlock_probe_hidden_size,
                                       self.generator)
            self.probe_accuracies[kind] = probe_accuracy(probes[kind], features["val"], labels["val"])
        self.challenger_kind = max(PROBE_KINDS, key=lambda kind: self.probe_accuracies[kind])
        self.challenger_accuracy = self.probe_accuracies[self.challenger_kind]
        self.challenger = probes[self.challenger_kind]

    def _gradients(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        names = list(self.weights)
        grads = torch.autograd.grad(loss, [self.weights[name] for name in names], allow_unused=True)
        return {name: torch.zeros_like(self.weights[name]) if g is None else g for name, g in zip(names, grads)}

    def _select_weights(self) -> int:
        """Score the encoder weights and OR the round's selection into the masks; the count added."""
        count = self.args.encoderlock_score_examples
        authorized = self.trainer.train_dataset
        auth_index = torch.randperm(len(authorized), generator=self.generator)[:count].tolist()
        prohibited = self._score_batch()
        with torch.enable_grad():
            auth_batch = self._collate(authorized, auth_index)
            auth_loss = self.model(**auth_batch).loss
            g_auth = self._gradients(auth_loss)
            prohibited_loss = F.cross_entropy(self.challenger(encode(self.model, prohibited)), prohibited["labels"])
            g_prohibited = self._gradients(prohibited_loss)
        scores = {name: g_prohibited[name].abs() / (g_auth[name].abs() + 1e-8) for name in self.weights}
        for name, score in scores.items():
            score[self.masks[name]] = -math.inf  # already selected
        layers = sorted(scores, key=lambda name: float(scores[name].max()), reverse=True)
        layers = layers[: self.args.encoderlock_layers_per_round]
        flat = torch.cat([scores[name].flatten() for name in layers])
        top = torch.topk(flat, min(self.args.encoderlock_weights_per_round, flat.numel())).indices
        top = top[torch.isfinite(flat[top])]
        added, offset = 0, 0
        for name in layers:
            size = scores[name].numel()
            chosen = top[(top >= offset) & (top < offset + size)] - offset
            self.masks[name].view(-1)[chosen] = True
            added += len(chosen)
            offset += size
        return added

    def _score_batch(self) -> Batch:
        """Up to ``encoderlock_score_examples`` prohibited training examples, collated with their labels."""
        pool = self._prohibited
        count = min(self.args.encoderlock_score_examples, len(pool["train"]))
        index = torch.randperm(len(pool["train"]), generator=self.generator)[:count].tolist()
        rows = [pool["train"][i] for i in index]
        batch = self._collate(pool["dataset"], rows)
        batch["labels"] = pool["labels"][rows].to(next(self.model.parameters()).device)
        return batch

    def _start_round(self) -> None:
        was_training = self.model.training
        self.model.eval()
        try:
            self._train_challenger()
            self._select_weights()
        finally:
            self.model.train(was_training)
        self.rounds += 1

    # ---- training --------------------------------------------------------------------------------------------

    def training_loss(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        if self._prohibited is None:
            self._prohibited = self._prepare_prohibited()
            self._batches = self._prohibited_batches()
        if self.trainer.state.global_step // self.args.encoderlock_round_steps >= self.rounds:
            self._start_round()
        freeze_norm_statistics(self.model)  # BatchNorm runs on the released statistics; no buffer changes
        auth_loss = model(**inputs).loss
        batch = next(self._batches)
        prohibited_loss = F.cross_entropy(self.challenger(encode(model, batch)), batch["labels"])
        loss = auth_loss + torch.log1p(self.args.encoderlock_ratio_weight * auth_loss / prohibited_loss)
        metrics = {
            "encoderlock_auth_loss": auth_loss.item(),
            "encoderlock_prohibited_loss": prohibited_loss.item(),
            "encoderlock_challenger_accuracy": self.challenger_accuracy,
            "encoderlock_selected": float(sum(int(mask.sum()) for mask in self.masks.values())),
        }
        return loss, metrics

    @torch.no_grad()
    def restore_unselected(self) -> None:
        """Put every unselected encoder weight back to its released value."""
        for name, parameter in self.weights.items():
            parameter.copy_(torch.where(self.masks[name], parameter, self.original[name]))

    def finish(self) -> None:
        """Remove the gradient hooks and make every parameter trainable again (an ordinary model)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)

    def changes(self) -> dict[str, Any]:
        """How many encoder weights were selected and how many actually differ from the released ones."""
        encoder = sum(p.numel() for name, p in self.model.named_parameters()
                      if not name.startswith(f"{classifier_head(self.model)[0]}."))
        selected = sum(int(mask.sum()) for mask in self.masks.values())
        changed = sum(int((p.detach() != self.original[name]).sum()) for name, p in self.weights.items())
        return {"rounds": self.rounds, "weights_selected": selected, "weights_changed": changed,
                "encoder_parameters": encoder, "weights_changed_share": changed / max(encoder, 1)}
