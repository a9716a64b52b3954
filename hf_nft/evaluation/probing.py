"""Probe-only evaluation of an encoder: the attack harness's linear and MLP probes and the tuned attacker
restricted to probes, on a domain, for the protected, unprotected and random-init (scratch) encoders."""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel

from hf_nft.attacks.batches import Collate
from hf_nft.attacks.suite import Suite
from hf_nft.evaluation.report import ProtectionReport, evaluate_protection

PROBE_KINDS = ["linear_probe", "mlp_probe"]


def probe_suite(examples_per_class: int = 10, trials: int = 8, seeds: tuple[int, ...] = (0, 1),
                steps: int = 300) -> Suite:
    """A linear probe (fresh head), an MLP probe and the tuned attacker searching over both (optimizer,
    learning rate, steps, head reset), on ``examples_per_class`` labelled examples per class."""
    return Suite.from_dict({
        "name": "probes",
        "seeds": list(seeds),
        "examples_per_class": examples_per_class,
        "defaults": {"steps": steps, "batch_size": 32, "eval_every": 50},
        "attacks": [
            {"kind": "linear_probe", "optimizer": "adam", "learning_rate": 1e-2, "reset_head": True},
            {"kind": "mlp_probe", "optimizer": "adam", "learning_rate": 1e-3, "options": {"hidden_size": 128}},
            {"kind": "tuned", "options": {"trials": trials, "kinds": PROBE_KINDS, "steps": [100, steps],
                                          "learning_rate": [1e-4, 1e-1]}},
        ],
    })


def probe_domain(protected: PreTrainedModel, unprotected: PreTrainedModel, train: Dataset, test: Dataset,
                 suite: Suite, progress: bool = True, collate_fn: Collate | None = None,
                 **kwargs: Any) -> ProtectionReport:
    """Probe accuracy on one domain for the protected, unprotected and random-init encoders."""
    return evaluate_protection(protected, train, test, suite=suite, reference=unprotected, scratch=True,
                               progress=progress, collate_fn=collate_fn, **kwargs)


def best_probe(report: ProtectionReport, role: str) -> float:
    """The strongest probe's mean final accuracy for ``role`` (the attacker's best, per role)."""
    return max(outcomes[role].final_mean for outcomes in report.results.values())
