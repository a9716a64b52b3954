"""``evaluate_protection``: run an attack suite on a protected model (and references) into a report."""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from hf_nft.attacks.base import SearchAttack
from hf_nft.attacks.batches import AttackData, Collate, collated
from hf_nft.attacks.files import write_text
from hf_nft.attacks.models import check_label_count, load_classifier
from hf_nft.attacks.runner import AttackRun, check_attacks, resolve, score_model
from hf_nft.attacks.scratch import scratch_model
from hf_nft.attacks.spec import AttackSpec
from hf_nft.attacks.suite import Suite, load_suite
from hf_nft.data import num_labels
from hf_nft.evaluation.metrics import Metric, get_metric
from hf_nft.evaluation.overhead import default_target, describe_overhead, fine_tuning_overhead
from hf_nft.registry import ATTACKS

ROLES = ("protected", "unprotected", "scratch")


@dataclass
class Outcome:
    """One attack on one model, over seeds: the metric curve per seed at ``steps``."""

    spec: dict[str, Any]
    seeds: list[int]
    steps: list[int]
    values: list[list[float]]
    search: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_runs(cls, runs: Sequence[AttackRun], search: dict[str, Any]) -> Outcome:
        """Collect runs of one concrete spec that differ only in their seed."""
        steps = runs[0].steps
        if any(run.steps != steps for run in runs):
            raise ValueError("Runs of one attack must evaluate at the same steps.")
        spec = runs[0].spec.to_dict()
        spec.pop("seed")
        seeds, values = [run.spec.seed for run in runs], [run.values for run in runs]
        return cls(spec=spec, seeds=seeds, steps=steps, values=values, search=search)

    @property
    def finals(self) -> list[float]:
        """The final value of each seed."""
        return [values[-1] for values in self.values]

    @property
    def final_mean(self) -> float:
        return statistics.fmean(self.finals)

    @property
    def final_std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.finals) if len(self.finals) > 1 else 0.0

    @property
    def mean_curve(self) -> list[float]:
        return [statistics.fmean(column) for column in zip(*self.values)]

    @property
    def std_curve(self) -> list[float]:
        return [statistics.stdev(column) if len(column) > 1 else 0.0 for column in zip(*self.values)]


@dataclass
class ProtectionReport:
    """Restricted-domain metric of every attack on every model role (``protected``, ``unprotected``,
    ``scratch``), the original-domain metric before any attack, and the fine-tuning overhead."""

    suite: str
    metric: str
    higher_is_better: bool
    original: dict[str, float]
    before: dict[str, float]
    results: dict[str, dict[str, Outcome]]
    overhead: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def roles(self) -> list[str]:
        return [role for role in ROLES if role in self.before]

    @property
    def headline(self) -> dict[str, Any]:
        """The strongest attack: the best final restricted metric of the protected model (for the attacker)."""
        sign = 1.0 if self.higher_is_better else -1.0
        name = max(self.results, key=lambda attack: sign * self.results[attack]["protected"].final_mean)
        outcomes = self.results[name]
        return {
            "attack": name,
            "spec": outcomes["protected"].spec,
            **{role: {"mean": o.final_mean, "std": o.final_std} for role, o in outcomes.items()},
            "overhead": self.overhead.get(name),
        }

    def table(self) -> str:
        """A plain-text table: one row per attack, one column per model role, plus the overhead."""
        roles, headline, spec = self.roles, self.headline["attack"], self.headline["spec"]
        seeds = len(next(iter(self.results.values()))["protected"].seeds)
        direction = "higher" if self.higher_is_better else "lower"
        width = max(32, *(len(name) + 2 for name in self.results))
        rows = [[f" {'attack':<{width - 1}}", *(f"{role:>15}" for role in roles), "  fine-tuning overhead"]]
        if self.original:
            original = (f"{self.original[role]:>15.3f}" for role in roles)
            rows.append([f" {'original domain, no attack':<{width - 1}}", *original])
        rows.append([f" {'restricted domain, no attack':<{width - 1}}", *(f"{self.before[r]:>15.3f}" for r in roles)])
        for name, outcomes in self.results.items():
            cells = [f"{o.final_mean:.3f} ± {o.final_std:.3f}" for o in (outcomes[r] for r in roles)]
            overhead = describe_overhead(self.overhead[name]) if name in self.overhead else ""
            marker = "*" if name == headline else " "
            rows.append([f"{marker}{name:<{width - 1}}", *(f"{cell:>15}" for cell in cells), f"  {overhead}"])
        lines = [
            f"Suite {self.suite!r}: restricted-domain {self.metric} after each attack "
            f"(mean ± std over {seeds} seed(s); {direction} is better for the attacker)",
            *(" ".join(row).rstrip() for row in rows),
            f"* headline (strongest attack on the protected model): {headline} "
            f"({spec['kind']}, {spec['optimizer']}, lr={spec['learning_rate']:g}, {spec['steps']} steps)",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-serialisable), with the headline included for readers."""
        return {
            "suite": self.suite,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "original": self.original,
            "before": self.before,
            "results": {name: {role: vars(o) for role, o in by_role.items()} for name, by_role in self.results.items()},
            "overhead": self.overhead,
            "seconds": self.seconds,
            "headline": self.headline,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtectionReport:
        """Inverse of :meth:`to_dict` (the derived ``headline`` is recomputed). Keys this version does not
        know (from a newer one) are dropped with a warning."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"headline"})
        if unknown:
            warnings.warn(f"Ignoring unknown protection report keys {unknown}.", stacklevel=2)
        values = {key: value for key, value in data.items() if key in known}
        values["results"] = {
            name: {role: Outcome(**outcome) for role, outcome in outcomes.items()}
            for name, outcomes in data["results"].items()
        }
        return cls(**values)

    def to_json(self, path: str | Path) -> None:
        """Write the report to ``path`` as JSON (atomically)."""
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ProtectionReport:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def plot(self, path: str | Path) -> None:
        """Save the metric curves (mean ± std over seeds, one panel per attack) as a PNG."""
        from hf_nft.evaluation.plots import plot_report

        plot_report(self, path)


def _runs_per_spec(spec: AttackSpec, seeds: int) -> int:
    kind = ATTACKS.get(spec.kind)
    return seeds + (kind(spec).trial_count() if issubclass(kind, SearchAttack) else 0)


def evaluate_protection(
    protected: PreTrainedModel | str | Path,
    restricted_train: Dataset,
    restricted_eval: Dataset,
    suite: str | Path | Suite | list[AttackSpec] = "default",
    reference: PreTrainedModel | str | Path | None = None,
    scratch: bool = True,
    original_eval: Dataset | None = None,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
    collate_fn: Collate | None = None,
    metric: str | Metric = "accuracy",
    target: float | None = None,
    scratch_seed: int = 0,
    device: torch.device | str | None = None,
) -> ProtectionReport:
    """Attack ``protected`` (and the unprotected ``reference`` and a fresh ``scratch`` model) with a suite.

    Every input is checked before any attack runs. ``target`` is the restricted metric the fine-tuning
    overhead counts steps to (default: 90% of what scratch reaches under the same attack). ``seeds``
    overrides the suite's. Models given as directories are loaded onto ``device`` (default: the GPU when
    there is one); attacks run where each model is. None of the given models is modified.
    """
    metric = get_metric(metric)
    suite = load_suite(suite)
    if seeds is not None:
        suite = Suite(name=suite.name, attacks=suite.attacks, seeds=list(seeds))
    models = {"protected": load_classifier(protected, device)}
    if reference is not None:
        models["unprotected"] = load_classifier(reference, device)
    if scratch:
        models["scratch"] = scratch_model(models["protected"], scratch_seed)
    data = AttackData(restricted_train, restricted_eval, collate_fn)
    for model in models.values():
        check_attacks(model, suite.attacks, data)
        if original_eval is not None:
            check_label_count(model, num_labels(original_eval), "original domain")

    original = {}
    if original_eval is not None:
        original_batches = collated(original_eval, collate_fn)
        original = {role: score_model(model, original_batches, metric) for role, model in models.items()}
    before = {role: score_model(model, data.eval_batches, metric) for role, model in models.items()}
    start = time.perf_counter()
    total = sum(_runs_per_spec(spec, len(suite.seeds)) for spec in suite.attacks) * len(models)
    results: dict[str, dict[str, Outcome]] = {}
    with tqdm(total=total, disable=not progress, desc="attacks", unit="run") as bar:
        for spec in suite.attacks:
            results[spec.name] = {}
            for role, model in models.items():
                bar.set_postfix_str(f"{spec.name} on {role}")
                resolved = resolve(spec, model, data, metric, on_trial=lambda: bar.update(1))
                runs = []
                for seed in suite.seeds:
                    runs.append(resolved.run(model, data, metric, seed))
                    bar.update(1)
                results[spec.name][role] = Outcome.from_runs(runs, resolved.search)
    overhead = {}
    for name, outcomes in results.items():
        if target is not None or "scratch" in outcomes:
            goal = target
            if goal is None:
                goal = default_target(outcomes["scratch"].final_mean, metric.higher_is_better)
            curves = {role: (o.steps, o.mean_curve) for role, o in outcomes.items()}
            overhead[name] = fine_tuning_overhead(curves, goal, metric.higher_is_better)
    return ProtectionReport(
        suite=suite.name,
        metric=metric.name,
        higher_is_better=metric.higher_is_better,
        original=original,
        before=before,
        results=results,
        overhead=overhead,
        seconds=time.perf_counter() - start,
    )
