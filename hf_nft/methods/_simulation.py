"""Functional fine-tuning simulation shared by the meta-learning methods (SOPHON, MLAC, ...).

A simulated adversary fine-tunes *copies of the parameter tensors* (never a deep copy of the model) with a
real ``torch.optim`` optimizer, calling the model through ``torch.func.functional_call``. Buffers (e.g.
BatchNorm running statistics) are cloned as well, so the simulation never touches the model's own state.
The first-order meta-gradient (FOMAML) of the suppression loss at every point of the trajectory, including
its start, is accumulated and returned for the caller to apply to the real weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from hf_nft.config import parse_adversary
from hf_nft.modeling import classifier_head, fresh_layer_parameters
from hf_nft.optimizers import build_optimizer

Batch = dict[str, Any]
Forward = Callable[[Batch], Any]
# A loss of the model (called through ``forward``) on a batch.
BatchLoss = Callable[[Forward, Batch], torch.Tensor]


@dataclass(frozen=True)
class AdversaryStrategy:
    """One simulated fine-tuning strategy: optimizer, learning rate, batch size, head reset."""

    optimizer: str
    learning_rate: float
    batch_size: int
    reset_head: bool


class AdversaryPool:
    """Draws simulated fine-tuning strategies uniformly from ``optimizer:lr`` entries and batch sizes."""

    def __init__(
        self, entries: list[str], batch_sizes: list[int], head_reset_probability: float, seed: int = 0
    ) -> None:
        self.adversaries = [parse_adversary(entry) for entry in entries]
        self.batch_sizes = list(batch_sizes)
        self.head_reset_probability = head_reset_probability
        self._rng = random.Random(seed)

    def sample(self) -> AdversaryStrategy:
        """A random strategy from the pool."""
        optimizer, learning_rate = self._rng.choice(self.adversaries)
        return AdversaryStrategy(
            optimizer=optimizer,
            learning_rate=learning_rate,
            batch_size=self._rng.choice(self.batch_sizes),
            reset_head=self._rng.random() < self.head_reset_probability,
        )


@dataclass
class SimulationResult:
    """Averaged first-order meta-gradient per parameter name, the adversary's final weights, and the losses
    seen along the trajectory."""

    meta_gradients: dict[str, torch.Tensor]
    adapted_parameters: dict[str, torch.Tensor]
    suppression_losses: list[float]
    adversary_losses: list[float]
    # d(sum of suppression losses)/d(log learning rate), first-order: sum_i <grad L(theta_{i+1}), theta_{i+1} - theta_i>
    # (an optimizer step is linear in its learning rate); lets a caller meta-learn the adversary's learning rate.
    log_lr_sensitivity: float = 0.0


def slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    """Rows ``start:stop`` of every tensor in a batch (other values are kept as they are)."""
    return {key: value[start:stop] if torch.is_tensor(value) else value for key, value in batch.items()}


class FineTuningSimulation:
    """Simulates an adversary fine-tuning ``model`` on restricted batches and scores the trajectory.

    ``adversary_loss`` is what the adversary minimises (e.g. cross-entropy); ``suppression_loss`` is the
    non-fine-tunable loss the protection wants low at every point of the trajectory. ``head_layers`` names the
    layers an adversary with ``reset_head`` re-initialises (default: the classification head, if the model has one).
    """

    def __init__(self, model: nn.Module, adversary_loss: BatchLoss, suppression_loss: BatchLoss,
                 head_layers: Sequence[str] | None = None) -> None:
        self.model = model
        self.adversary_loss = adversary_loss
        self.suppression_loss = suppression_loss
        self.head_layers = _default_head_layers(model) if head_layers is None else list(head_layers)

    def _forward(self, tensors: dict[str, torch.Tensor], training: bool) -> Forward:
        def forward(batch: Batch) -> Any:
            was_training = self.model.training
            self.model.train(training)
            try:
                inputs = {key: value for key, value in batch.items() if key != "labels"}
                return functional_call(self.model, tensors, args=(), kwargs=inputs, strict=False)
            finally:
                self.model.train(was_training)

        return forward

    def _accumulate(
        self, loss_fn: BatchLoss, tensors: dict[str, torch.Tensor], trainable: dict[str, torch.Tensor],
        batch: Batch, training: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss = loss_fn(self._forward(tensors, training), batch)
        grads = torch.autograd.grad(loss, list(trainable.values()), allow_unused=True)
        return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(trainable.values(), grads)]

    def run(self, strategy: AdversaryStrategy, batches: Iterator[Batch], steps: int,
            query_size: int, generator: torch.Generator | None = None,
            frozen: Collection[str] = ()) -> SimulationResult:
        """Simulate ``steps`` adversary steps; each batch gives a support slice and a query slice.

        The support slice (the first ``strategy.batch_size`` rows) drives the adversary's step; the query slice
        (the last ``query_size`` rows) scores the suppression loss. Query losses are evaluated in eval mode
        (how the adversary deploys the result), support steps in train mode (how it trains). Parameters named
        in ``frozen`` are not updated by the adversary (e.g. an adversary training only a head) but still get
        meta-gradients.
        """
        released = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        fast = {name: p.detach().clone().requires_grad_(True) for name, p in released.items()}
        meta = {name: torch.zeros_like(p) for name, p in released.items()}
        reset_names: set[str] = set()
        terms: list[torch.Tensor] = []
        step_delta: dict[str, torch.Tensor] = {}
        sensitivity = 0.0

        def score(query: Batch, skip: set[str]) -> None:
            nonlocal sensitivity
            loss, grads = self._accumulate(self.suppression_loss, {**fast, **buffers}, fast, query, training=False)
            for (name, _), grad in zip(fast.items(), grads):
                if name not in skip:
                    meta[name] += grad
                if name in step_delta:
                    sensitivity += float((grad * step_delta[name]).sum())
            terms.append(loss)

        if strategy.reset_head:
            if not self.head_layers:
                raise ValueError(f"{type(self.model).__name__} has no classification head to reset: simulate "
                                 "its adversaries with head_reset_probability=0.")
            score(self._query(next(batches), query_size), skip=set())  # the released weights, own head
            modules = dict(self.model.named_modules())
            with torch.no_grad():
                for name, value in _fresh_values(modules, self.head_layers, generator).items():
                    if name in fast:
                        fast[name].copy_(value)
                        reset_names.add(name)
        moving = {name: tensor for name, tensor in fast.items() if name not in frozen}
        if not moving:
            raise ValueError("Every parameter is frozen: the simulated adversary has nothing to train.")
        optimizer = build_optimizer(strategy.optimizer, moving.values(), strategy.learning_rate)
        adversary_losses: list[float] = []
        for _ in range(steps):
            batch = next(batches)
            score(self._query(batch, query_size), skip=reset_names)
            support = slice_batch(batch, 0, strategy.batch_size)
            loss, grads = self._accumulate(self.adversary_loss, {**fast, **buffers}, moving, support, training=True)
            for tensor, grad in zip(moving.values(), grads):
                tensor.grad = grad
            before = {name: tensor.detach().clone() for name, tensor in moving.items()}
            optimizer.step()
            step_delta = {name: moving[name].detach() - value for name, value in before.items()}
            adversary_losses.append(float(loss))
        score(self._query(next(batches), query_size), skip=reset_names)
        for grad in meta.values():
            grad /= len(terms)
        return SimulationResult(meta, {name: t.detach() for name, t in fast.items()}, [float(t) for t in terms],
                                adversary_losses, sensitivity)

    def run_differentiable(self, learning_rate: torch.Tensor, batches: Iterator[Batch], steps: int, batch_size: int,
                           query_size: int, frozen: Collection[str] = (),
                           start: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Second-order variant: ``steps`` plain-SGD adversary steps kept in the autograd graph.

        Returns the suppression loss at every point of the trajectory (start included) as tensors that depend
        on the model's parameters and on ``learning_rate`` through the whole inner loop (memory grows with
        ``steps``). ``start`` replaces some starting values (e.g. a meta-learned head initialisation).
        """
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        fast = {name: p for name, p in self.model.named_parameters() if p.requires_grad} | (start or {})
        moving = [name for name in fast if name not in frozen]
        terms: list[torch.Tensor] = []
        for _ in range(steps):
            batch = next(batches)
            query = self._query(batch, query_size)
            terms.append(self.suppression_loss(self._forward({**fast, **buffers}, False), query))
            support = slice_batch(batch, 0, batch_size)
            loss = self.adversary_loss(self._forward({**fast, **buffers}, True), support)
            grads = torch.autograd.grad(loss, [fast[name] for name in moving], create_graph=True, allow_unused=True)
            fast = {**fast, **{name: fast[name] - learning_rate * g for name, g in zip(moving, grads) if g is not None}}
        terms.append(self.suppression_loss(self._forward({**fast, **buffers}, False),
                                           self._query(next(batches), query_size)))
        return terms

    @staticmethod
    def _query(batch: Batch, query_size: int) -> Batch:
        size = next(value for value in batch.values() if torch.is_tensor(value)).shape[0]
        return slice_batch(batch, max(0, size - query_size), size)


def _default_head_layers(model: nn.Module) -> list[str]:
    """The classification head's name; empty for a model without one."""
    try:
        return [classifier_head(model)[0]]
    except ValueError:
        return []


def _fresh_values(modules: dict[str, nn.Module], layers: list[str],
                  generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Freshly initialised values for the parameters of the named layers."""
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"The model has no layer named {missing}; cannot re-initialise it.")
    fresh: dict[str, torch.Tensor] = {}
    for name in layers:
        fresh.update(fresh_layer_parameters(name, modules[name], generator))
    return fresh
