"""Attacking diffusion models with the harness: the denoising MSE curves of every attack on every model role
(a :class:`~hf_nft.evaluation.report.ProtectionReport`), plus samples of each model before and after each attack
scored by a domain classifier."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from diffusers import UNet2DModel
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from hf_nft.attacks.batches import AttackData, collated
from hf_nft.attacks.runner import execute, score
from hf_nft.attacks.spec import AttackSpec
from hf_nft.diffusion.attacks import DenoisingMSE, eval_timesteps
from hf_nft.diffusion.denoising import fixed_noise_batches, make_scheduler
from hf_nft.diffusion.domain_classifier import DOMAIN_NAMES, RESTRICTED, domain_fractions
from hf_nft.diffusion.sampling import generate
from hf_nft.evaluation.overhead import default_target, fine_tuning_overhead
from hf_nft.evaluation.report import Outcome, ProtectionReport
from hf_nft.registry import ATTACKS

BEFORE = "no attack"
ORIGINAL = "original domain"


@dataclass
class SampleSettings:
    """How samples are drawn and scored: ``count`` images, ``inference_steps`` DDPM steps, a fixed ``seed``."""

    classifier: PreTrainedModel
    count: int = 64
    inference_steps: int = 50
    seed: int = 0


@dataclass
class DiffusionEvaluation:
    """The denoising-MSE report, the original-domain MSE per role, and per stage (``no attack`` or an attack
    name) and role the samples and the fraction of them classified as restricted."""

    report: ProtectionReport
    samples: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    # Per stage and role: the fraction of the samples the classifier assigns to each of its classes.
    sample_domains: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # Per stage (``no attack``, ``original domain`` or an attack name, first seed) and role: denoising MSE per timestep.
    per_timestep: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    @property
    def restricted_fraction(self) -> dict[str, dict[str, float]]:
        """Per stage and role: the fraction of the samples the classifier assigns to the restricted domain."""
        name = DOMAIN_NAMES[RESTRICTED]
        return {stage: {role: domains[name] for role, domains in by_role.items()}
                for stage, by_role in self.sample_domains.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"denoising": self.report.to_dict(), "restricted_sample_fraction": self.restricted_fraction,
                "restricted_sample_fraction_higher_is_better_for_attacker": True,
                "sample_domains": self.sample_domains,
                "denoising_mse_per_timestep": self.per_timestep}


def denoising_score(model: UNet2DModel, dataset: Dataset, num_train_timesteps: int, beta_schedule: str,
                    noise_seed: int = 0) -> float:
    """Denoising MSE of ``model`` on ``dataset`` at the fixed evaluation timesteps and noise seed."""
    return _score(model, _evaluation_batches(dataset, num_train_timesteps, beta_schedule, noise_seed))


def denoising_per_timestep(model: UNet2DModel, dataset: Dataset, num_train_timesteps: int, beta_schedule: str,
                           noise_seed: int = 0) -> dict[int, float]:
    """:func:`denoising_score` split by evaluation timestep (same noise; the headline figure is their mean)."""
    batches = _evaluation_batches(dataset, num_train_timesteps, beta_schedule, noise_seed)
    return {step: _score(model, [b for b in batches if int(b["timestep"][0]) == step])
            for step in eval_timesteps(num_train_timesteps)}


def _mean_by_role(per_timestep: dict[str, dict[int, float]]) -> dict[str, float]:
    return {role: sum(by_step.values()) / len(by_step) for role, by_step in per_timestep.items()}


def _evaluation_batches(dataset: Dataset, num_train_timesteps: int, beta_schedule: str,
                        noise_seed: int) -> list[dict[str, torch.Tensor]]:
    scheduler = make_scheduler(num_train_timesteps, beta_schedule)
    return fixed_noise_batches(collated(dataset), scheduler, eval_timesteps(num_train_timesteps), noise_seed)


def _score(model: UNet2DModel, batches: list[dict[str, torch.Tensor]]) -> float:
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        return score(lambda batch: model(sample=batch["sample"].to(device), timestep=batch["timestep"].to(device)).sample,
                     batches, DenoisingMSE())
    finally:
        model.train(was_training)


def evaluate_diffusion_protection(
    models: dict[str, UNet2DModel], restricted_train: Dataset, restricted_eval: Dataset, attacks: Sequence[AttackSpec],
    original_eval: Dataset | None = None, seeds: Sequence[int] = (0,), samples: SampleSettings | None = None,
    progress: bool = True,
) -> DiffusionEvaluation:
    """Attack every model of ``models`` (by role: ``protected``, ``unprotected``, ``scratch``) with each diffusion
    attack; none of them is modified. With ``samples``, each model is also sampled before and after each attack
    (the run of the first seed) and the samples are scored by the domain classifier."""
    if not attacks:
        raise ValueError("evaluate_diffusion_protection needs at least one attack.")
    options = ATTACKS.get(attacks[0].kind)(attacks[0]).options
    timesteps, schedule = options["num_train_timesteps"], options["beta_schedule"]
    scheduler = make_scheduler(timesteps, schedule)
    for spec in attacks:
        for model in models.values():
            ATTACKS.get(spec.kind)(spec).check_model(model)
    data = AttackData(restricted_train, restricted_eval)
    evaluation = DiffusionEvaluation(report=None)  # type: ignore[arg-type]
    metric = DenoisingMSE()

    def sample(stage: str, role: str, model: UNet2DModel) -> None:
        if samples is not None:
            images = generate(model, scheduler, samples.count, samples.inference_steps, samples.seed)
            evaluation.samples.setdefault(stage, {})[role] = images
            evaluation.sample_domains.setdefault(stage, {})[role] = domain_fractions(samples.classifier, images)

    # Every timestep has as many noised images, so the mean of the per-timestep MSEs is the headline MSE.
    if original_eval is not None:
        evaluation.per_timestep[ORIGINAL] = {
            role: denoising_per_timestep(m, original_eval, timesteps, schedule) for role, m in models.items()}
    evaluation.per_timestep[BEFORE] = {
        role: denoising_per_timestep(m, restricted_eval, timesteps, schedule) for role, m in models.items()}
    original = _mean_by_role(evaluation.per_timestep.get(ORIGINAL, {}))
    before = _mean_by_role(evaluation.per_timestep[BEFORE])
    for role, model in models.items():
        sample(BEFORE, role, model)
    start = time.perf_counter()
    results: dict[str, dict[str, Outcome]] = {}
    with tqdm(total=len(attacks) * len(models) * len(seeds), disable=not progress, desc="attacks", unit="run") as bar:
        for spec in attacks:
            results[spec.name] = {}
            for role, model in models.items():
                bar.set_postfix_str(f"{spec.name} on {role}")
                runs = []
                for index, seed in enumerate(seeds):
                    run = execute(model, spec.replace(seed=seed), data, metric, keep_model=index == 0)
                    if index == 0:
                        sample(spec.name, role, run.model)
                        evaluation.per_timestep.setdefault(spec.name, {})[role] = denoising_per_timestep(
                            run.model, restricted_eval, timesteps, schedule)
                        run.model = None
                    runs.append(run)
                    bar.update(1)
                results[spec.name][role] = Outcome.from_runs(runs, {})
    overhead = {}
    for name, outcomes in results.items():
        if "scratch" in outcomes:
            goal = default_target(outcomes["scratch"].final_mean, metric.higher_is_better)
            curves = {role: (o.steps, o.mean_curve) for role, o in outcomes.items()}
            overhead[name] = fine_tuning_overhead(curves, goal, metric.higher_is_better)
    evaluation.report = ProtectionReport(
        suite="diffusion", metric=metric.name, higher_is_better=metric.higher_is_better, original=original,
        before=before, results=results, overhead=overhead, seconds=time.perf_counter() - start,
    )
    return evaluation
