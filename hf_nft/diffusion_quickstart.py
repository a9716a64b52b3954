"""The diffusion quickstart: pre-train a small DDPM on ``mnist``, protect it against ``uci-digits`` with SOPHON's
diffusion mode, attack the unprotected, protected and scratch models with full fine-tuning and LoRA, and write the
protected ``DDPMPipeline``, ``report.json``, loss and attack curves, sample grids and the domain classifier."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from diffusers import UNet2DModel
from transformers import TrainingArguments

from hf_nft.attacks.files import atomic_path, write_text
from hf_nft.attacks.spec import AttackSpec
from hf_nft.config import NFTConfig
from hf_nft.data import load_domain
from hf_nft.diffusion.denoising import DEFAULT_BETA_SCHEDULE, DEFAULT_TRAIN_TIMESTEPS, make_scheduler
from hf_nft.diffusion.domain_classifier import domain_accuracy, train_domain_classifier
from hf_nft.diffusion.evaluation import BEFORE, DiffusionEvaluation, SampleSettings, evaluate_diffusion_protection
from hf_nft.diffusion.sampling import save_grids
from hf_nft.diffusion.training import DenoisingTrainer, save_pipeline, small_unet
from hf_nft.quickstart import ORIGINAL_DOMAIN, RESTRICTED_DOMAIN, quiet_training_arguments
from hf_nft.trainer import NFTTrainer

FULL_FINETUNE = "full_finetune"
EVAL_IMAGES = {"original": 500, "restricted": 200}
# The diffusion adversary pool: the attack optimizers at rates around and above the attacks' own.
DIFFUSION_ADVERSARY_POOL = ["adam:0.001", "adam:0.003", "adamw:0.002", "sgd_momentum:0.01", "rmsprop:0.001"]
# Suppress only below 60 of the 100 timesteps: above, noisy mnist and uci-digits images are nearly indistinguishable.
SUPPRESSION_MAX_TIMESTEP = 60
# The alternation ends once the simulated Adam adversary's denoising loss after its 8 steps averages 30 over 10 FTS
# steps (on the unprotected model it is about 0.2; the real attack gets to about 0.07 in 150 steps).
STOP_ADVERSARY_LOSS = 30.0
# During the repair, one FTS step in every 8 at most, only while the original domain's denoising MSE is within 8% of
# the pre-trained model's (the bound is 10%), and none in the last 50 steps (the NTR steps after an FTS step
# need that long, at the annealed rate, to repair what it did to the original domain).
REPAIR_FTS_EVERY, REPAIR_ORIGINAL_TOLERANCE, REPAIR_QUIET_STEPS = 8, 0.08, 50


def diffusion_attacks(fast: bool = False, seed: int = 0) -> list[AttackSpec]:
    """The quickstart's attacks: full fine-tuning (Adam) and LoRA, on all the attacker's restricted images."""
    steps = 40 if fast else 150
    common = {"batch_size": 32, "steps": steps, "eval_every": steps // 3, "seed": seed}
    return [
        AttackSpec(kind="diffusion_finetune", name=FULL_FINETUNE, optimizer="adam", learning_rate=1e-3, **common),
        AttackSpec(kind="diffusion_lora", name="lora", optimizer="adam", learning_rate=3e-3, **common),
    ]


def pretrain_ddpm(output: Path, train: Dataset, steps: int, seed: int = 0, progress: bool = True,
                  widths: tuple[int, int] = (32, 64)) -> tuple[UNet2DModel, list[dict[str, float]]]:
    """:func:`small_unet` trained ``steps`` steps on ``train`` with the denoising loss; its log history."""
    unet = small_unet(seed=seed, widths=widths)
    args = TrainingArguments(**quiet_training_arguments(
        output / "pretraining", max_steps=steps, learning_rate=2e-3, warmup_steps=steps // 20,
        per_device_train_batch_size=32, remove_unused_columns=False, seed=seed, disable_tqdm=not progress,
        logging_steps=max(1, steps // 40),
    ))
    trainer = DenoisingTrainer(model=unet, args=args, train_dataset=train, scheduler=make_scheduler())
    trainer.train()
    return unet, trainer.state.log_history


def protection_config(output_dir: str | Path, fast: bool = False, seed: int = 0, **overrides: Any) -> NFTConfig:
    """The quickstart's SOPHON diffusion settings (``fast`` shortens the run for tests and smoke checks): the
    alternation (1 FTS step simulating the full fine-tuning attack's optimizer, rate and batch, then 1 NTR step),
    until the simulated adversary fails by ``STOP_ADVERSARY_LOSS`` (at the latest ``diffusion_final_ntr_steps``
    before the end), then the repair: NTR steps at a decaying rate, and maintenance FTS steps while the original
    domain is within ``REPAIR_ORIGINAL_TOLERANCE``, none in the last ``REPAIR_QUIET_STEPS``."""
    steps, final = (40, 10) if fast else (1400, 900)
    values = quiet_training_arguments(
        output_dir, nft_method="sophon_diffusion", diffusion_nft_loss="log_ascent", max_steps=steps,
        diffusion_final_ntr_steps=final, diffusion_final_ntr_learning_rate=1e-5,
        diffusion_stop_adversary_loss=0.0 if fast else STOP_ADVERSARY_LOSS,
        diffusion_suppression_max_timestep=SUPPRESSION_MAX_TIMESTEP, diffusion_ntr_distillation=1.0,
        diffusion_repair_fts_every=REPAIR_FTS_EVERY, diffusion_repair_original_tolerance=REPAIR_ORIGINAL_TOLERANCE,
        diffusion_repair_quiet_steps=0 if fast else REPAIR_QUIET_STEPS,
        learning_rate=5e-4, lr_scheduler_type="constant", per_device_train_batch_size=32,
        remove_unused_columns=False, seed=seed, inner_steps=2 if fast else 8, fts_steps=1, ntr_steps=1,
        adversary_pool=["adam:0.001"], adversary_batch_sizes=[32], head_reset_probability=0.0, query_batch_size=16,
        guard_every=0, logging_steps=max(1, steps // 40),
        diffusion_train_timesteps=DEFAULT_TRAIN_TIMESTEPS, diffusion_beta_schedule=DEFAULT_BETA_SCHEDULE,
    )
    values.update(overrides)
    return NFTConfig(**values)


def claim_checks(evaluation: DiffusionEvaluation) -> dict[str, bool]:
    """The issue's claims, evaluated on the measured figures (True = holds)."""
    report, fractions = evaluation.report, evaluation.restricted_fraction
    full = report.results[FULL_FINETUNE]
    checks = {
        "full fine-tuning: protected restricted MSE >= scratch's": (
            full["protected"].final_mean >= full["scratch"].final_mean),
        "full fine-tuning: protected restricted MSE > unprotected's": (
            full["protected"].final_mean > full["unprotected"].final_mean),
        "original-domain MSE: protected within 10% of unprotected": (
            report.original["protected"] <= 1.10 * report.original["unprotected"]),
    }
    if FULL_FINETUNE in fractions:
        after = fractions[FULL_FINETUNE]
        checks["full fine-tuning: protected samples restricted at most half as often as unprotected's"] = (
            after["protected"] <= 0.5 * after["unprotected"])
    return checks


def plot_losses(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Training-loss curves (pre-training; protection's NTR and FTS losses) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5 * len(histories), 3.4))
    FigureCanvasAgg(figure)
    for axis, (title, history) in zip(figure.subplots(1, len(histories), squeeze=False)[0], histories.items()):
        keys = [key for key in ("loss", "ntr_loss", "fts_loss_start", "fts_loss_end", "fts_adversary_loss_end")
                if any(key in entry for entry in history)]
        keys = keys[1:] if len(keys) > 1 else keys
        for key in keys:
            points = [(entry["step"], entry[key]) for entry in history if key in entry]
            axis.plot(*zip(*points), label=key)
        axis.set_yscale("symlog", linthresh=1e-2)  # log_ascent's FTS loss (-log MSE) is negative once MSE > 1
        axis.set_xlabel("step")
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)


@dataclass
class DiffusionQuickstartResult:
    """Where the diffusion quickstart wrote its outputs, its evaluation, checks and timings."""

    output_dir: Path
    evaluation: DiffusionEvaluation
    checks: dict[str, bool]
    seconds: dict[str, float]
    alternation_end_step: int
    repair_fts_steps: list[int]


def run_diffusion_quickstart(output_dir: str | Path, fast: bool = False, seed: int = 0,
                             progress: bool = True) -> DiffusionQuickstartResult:
    """Pre-train, protect, attack, sample and report; everything is written under ``output_dir``."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    original_train, original_test = load_domain(ORIGINAL_DOMAIN, "train"), load_domain(ORIGINAL_DOMAIN, "test")
    restricted_train = load_domain(RESTRICTED_DOMAIN, "train")
    # Held-out evaluation images (fixed subsets, each noised at the fixed timesteps with fixed noise).
    original_test = original_test.select(range(EVAL_IMAGES["original"]))
    restricted_test = load_domain(RESTRICTED_DOMAIN, "test").select(range(EVAL_IMAGES["restricted"]))
    scheduler = make_scheduler()

    phase = time.perf_counter()
    unprotected, pretraining_log = pretrain_ddpm(output, original_train, 150 if fast else 800, seed, progress)
    save_pipeline(unprotected, scheduler, output / "unprotected")
    seconds["pretrain"] = time.perf_counter() - phase

    phase = time.perf_counter()
    protected = UNet2DModel.from_pretrained(output / "unprotected" / "unet")
    trainer = NFTTrainer(model=protected, args=protection_config(output / "protection", fast, seed,
                                                                 disable_tqdm=not progress),
                         train_dataset=original_train, restricted_dataset=restricted_train)
    trainer.train()
    save_pipeline(protected, scheduler, output / "protected")
    write_text(output / "protected" / "nft_settings.json", json.dumps(trainer.method.settings(), indent=2) + "\n")
    alternation_end, maintenance_steps = trainer.method.repair_start(), trainer.method.maintenance_steps
    seconds["protect"] = time.perf_counter() - phase

    phase = time.perf_counter()
    classifier = train_domain_classifier(original_train, restricted_train, output / "domain_classifier_training",
                                         epochs=1.0 if fast else 2.0, seed=seed, progress=progress)
    classifier.save_pretrained(output / "domain_classifier")
    classifier_accuracy = domain_accuracy(classifier, original_test, restricted_test)
    seconds["domain_classifier"] = time.perf_counter() - phase

    phase = time.perf_counter()
    models = {"protected": protected, "unprotected": unprotected, "scratch": small_unet(seed=seed + 1)}
    evaluation = evaluate_diffusion_protection(
        models, restricted_train, restricted_test, diffusion_attacks(fast, seed), original_eval=original_test,
        samples=SampleSettings(classifier, count=32 if fast else 64, inference_steps=25, seed=seed),
        progress=progress,
    )
    seconds["attack_and_sample"] = time.perf_counter() - phase

    real = restricted_test.with_format("torch")[: evaluation_count(evaluation)]["pixel_values"]
    for stage, by_role in evaluation.samples.items():
        name = "before_attack" if stage == BEFORE else f"after_{stage}"
        save_grids(output / f"samples_{name}.png", {"real restricted (uci-digits)": real, **by_role},
                   f"Samples {stage if stage == BEFORE else 'after attack ' + stage} "
                   f"(fraction classified restricted: "
                   + ", ".join(f"{r} {f:.2f}" for r, f in evaluation.restricted_fraction[stage].items()) + ")")
    evaluation.report.plot(output / "curves.png")
    plot_losses({"pre-training (denoising MSE)": pretraining_log,
                 "protection (NTR, FTS start/end, adversary)": trainer.state.log_history}, output / "loss_curves.png")
    checks = claim_checks(evaluation)
    seconds["total"] = time.perf_counter() - start
    write_text(output / "report.json", json.dumps({
        **evaluation.to_dict(), "domain_classifier_accuracy": classifier_accuracy, "checks": checks,
        "settings": trainer.method.settings(), "attacks": [spec.to_dict() for spec in diffusion_attacks(fast, seed)],
        "alternation_end_step": alternation_end, "repair_fts_steps": maintenance_steps, "seconds": seconds,
        "fast": fast,
    }, indent=2) + "\n")
    return DiffusionQuickstartResult(output, evaluation, checks, seconds, alternation_end, maintenance_steps)


def evaluation_count(evaluation: DiffusionEvaluation) -> int:
    """How many samples each model drew (as many real images are shown beside them)."""
    return len(next(iter(next(iter(evaluation.samples.values())).values())))


def print_diffusion_result(result: DiffusionQuickstartResult) -> None:
    """Print the denoising table, the sample scores, the checks and the timings."""
    print(result.evaluation.report.table())
    print("\nFraction of samples the domain classifier assigns to the restricted domain (higher = attacker wins), "
          "and to the original domain / neither domain:")
    for stage, by_role in result.evaluation.sample_domains.items():
        print(f"  {stage:<16}" + "  ".join(
            f"{role} {domains['restricted']:.3f} ({domains['original']:.2f} / {domains['neither']:.2f})"
            for role, domains in by_role.items()))
    print("\nDenoising MSE per timestep (original domain, then restricted before and after each attack):")
    for stage, by_role in result.evaluation.per_timestep.items():
        for role, by_step in by_role.items():
            print(f"  {stage:<16}{role:<12}" + "  ".join(f"t={step} {value:.3f}" for step, value in by_step.items()))
    print(f"\nThe FTS/NTR alternation ran until step {result.alternation_end_step}; then the repair, NTR steps and "
          f"{len(result.repair_fts_steps)} maintenance FTS steps.")
    print("\nChecks (diffusion issue):")
    for name, holds in result.checks.items():
        print(f"  [{'ok' if holds else 'FAIL'}] {name}")
    print("\nTimings: " + ", ".join(f"{phase} {seconds:.0f}s" for phase, seconds in result.seconds.items()))
    print(f"Outputs in {result.output_dir}: protected/ (DDPMPipeline), report.json, curves.png, loss_curves.png, "
          "samples_*.png, domain_classifier/")
