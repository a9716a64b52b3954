"""The quickstart pipeline: pre-train a small image classifier on ``mnist``, protect it against ``uci-digits``
with SOPHON, attack the unprotected, protected and scratch models with the same suite, and report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import ConvNextConfig, ConvNextForImageClassification, PreTrainedModel, Trainer, TrainingArguments

from hf_nft.attacks.files import write_text
from hf_nft.config import NFTConfig
from hf_nft.data import IMAGE_SIZE, load_domain, load_renderings, num_labels
from hf_nft.trainer import NFTTrainer

ORIGINAL_DOMAIN = "mnist"
RESTRICTED_DOMAIN = "uci-digits"
# The restricted digits are protected in their own blocky rendering and a smooth one; bicubic stays held out
# (benchmarks/adaptive_attacks.py re-renders the attacker's data with it).
RESTRICTED_RENDERINGS = ("nearest", "bilinear")


def small_image_classifier(num_labels: int = 10, seed: int = 0) -> ConvNextForImageClassification:
    """A 230k-parameter ConvNeXt (LayerNorm, no BatchNorm) for 1x16x16 images, freshly initialised.

    ReLU, unit layer scale and a wider weight initialisation than ConvNeXt's ImageNet defaults (GELU, 1e-6,
    0.02) make this small model train from scratch under every optimizer of the attack suites, SGD included:
    with the defaults it stays at chance under SGD, which would make the scratch baseline meaningless.
    """
    torch.manual_seed(seed)
    config = ConvNextConfig(num_channels=1, patch_size=2, num_stages=3, hidden_sizes=[32, 64, 128],
                            depths=[1, 1, 1], num_labels=num_labels, image_size=IMAGE_SIZE, hidden_act="relu",
                            layer_scale_init_value=1.0, initializer_range=0.15)
    return ConvNextForImageClassification(config)


def quiet_training_arguments(output_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """TrainingArguments values shared by the quickstart's runs: CPU/GPU as available, no checkpoints."""
    values: dict[str, Any] = dict(
        output_dir=str(output_dir), save_strategy="no", report_to=[], logging_steps=50,
        per_device_train_batch_size=64, dataloader_num_workers=0,
    )
    values.update(overrides)
    return values


def pretrain(model: PreTrainedModel, train: Dataset, output_dir: Path, epochs: float, seed: int = 0,
             disable_tqdm: bool = False) -> PreTrainedModel:
    """Ordinary supervised training with ``transformers.Trainer`` (the unprotected reference)."""
    args = TrainingArguments(**quiet_training_arguments(
        output_dir, num_train_epochs=epochs, learning_rate=2e-3, weight_decay=0.05, warmup_steps=50, seed=seed,
        disable_tqdm=disable_tqdm,
    ))
    Trainer(model=model, args=args, train_dataset=train).train()
    return model


def pretrain_reference(output: Path, original_train: Dataset, fast: bool = False, seed: int = 0,
                       progress: bool = True) -> PreTrainedModel:
    """The quickstart's unprotected model: :func:`small_image_classifier` pre-trained on ``original_train``
    (2 epochs with ``fast``, else 8) and saved to ``output/unprotected``."""
    model = small_image_classifier(num_labels(original_train), seed=seed)
    pretrain(model, original_train, output / "pretraining", epochs=2 if fast else 8, seed=seed,
             disable_tqdm=not progress)
    model.save_pretrained(output / "unprotected")
    return model


def protection_config(output_dir: str | Path, fast: bool = False, seed: int = 0, **overrides: Any) -> NFTConfig:
    """The quickstart's SOPHON settings (``fast`` shortens the run for tests and smoke checks)."""
    values = quiet_training_arguments(
        output_dir, max_steps=80 if fast else 800, learning_rate=1e-3, lr_scheduler_type="constant", seed=seed,
        nft_loss="kl_uniform", inner_steps=4 if fast else 32, fts_steps=1, ntr_steps=3,
    )
    values.update(overrides)
    return NFTConfig(**values)


def protect(model: PreTrainedModel, args: NFTConfig, original_train: Dataset, original_eval: Dataset,
            restricted_train: Dataset, restricted_eval: Dataset | None = None) -> NFTTrainer:
    """Run SOPHON (or ``args.nft_method``) on ``model`` in place and return the trainer."""
    trainer = NFTTrainer(model=model, args=args, train_dataset=original_train, eval_dataset=original_eval,
                         restricted_dataset=restricted_train, restricted_eval_dataset=restricted_eval)
    trainer.train()
    return trainer


@dataclass
class QuickstartResult:
    """Where the quickstart wrote its outputs, its report and how long each phase took."""

    output_dir: Path
    report: Any
    seconds: dict[str, float]
    checks: dict[str, bool]


def claim_checks(report: Any) -> dict[str, bool]:
    """The foundation issue's acceptance checks, evaluated on a report (True = holds)."""
    original, results = report.original, report.results
    checks = {"original: protected >= unprotected - 3 points": original["protected"] >= original["unprotected"] - 0.03}
    for name, outcomes in results.items():
        protected, scratch = outcomes["protected"].final_mean, outcomes["scratch"].final_mean
        unprotected = outcomes["unprotected"].final_mean
        checks[f"{name}: protected <= scratch + 5"] = protected <= scratch + 0.05
        checks[f"{name}: unprotected >= scratch + 10"] = unprotected >= scratch + 0.10
    return checks


def run_quickstart(output_dir: str | Path, fast: bool = False, suite: str | None = None, seed: int = 0,
                   progress: bool = True) -> QuickstartResult:
    """Pre-train, protect, attack and report; everything is written under ``output_dir``."""
    from hf_nft.attacks.suite import load_suite
    from hf_nft.evaluation.report import evaluate_protection
    from hf_nft.hub import save_protected_model_files

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    original_train, original_test = load_domain(ORIGINAL_DOMAIN, "train"), load_domain(ORIGINAL_DOMAIN, "test")
    restricted_train = load_domain(RESTRICTED_DOMAIN, "train")
    restricted_test = load_domain(RESTRICTED_DOMAIN, "test")
    seconds["data"] = time.perf_counter() - start

    phase = time.perf_counter()
    model = pretrain_reference(output, original_train, fast=fast, seed=seed, progress=progress)
    seconds["pretrain"] = time.perf_counter() - phase

    phase = time.perf_counter()
    protected = ConvNextForImageClassification.from_pretrained(output / "unprotected")
    trainer = protect(protected, protection_config(output / "protection", fast=fast, seed=seed,
                                                   disable_tqdm=not progress),
                      original_train, original_test, load_renderings(RESTRICTED_DOMAIN, "train", RESTRICTED_RENDERINGS),
                      restricted_test)
    trainer.save_model(str(output / "protected"))
    seconds["protect"] = time.perf_counter() - phase

    phase = time.perf_counter()
    report = evaluate_protection(
        protected, restricted_train, restricted_test, suite=suite or ("quick" if fast else "default"),
        reference=model, scratch=True, original_eval=original_test, progress=progress,
    )
    seconds["attack"] = time.perf_counter() - phase
    seconds["total"] = time.perf_counter() - start

    report.to_json(output / "report.json")
    report.plot(output / "curves.png")
    metadata = trainer.protection_metadata().with_report(
        report, load_suite(suite or ("quick" if fast else "default")), restricted_train, restricted_test,
        original_test,
    )
    save_protected_model_files(
        output / "protected", metadata, plot=output / "curves.png",
        model_name="hf-nft quickstart: ConvNeXt digits, protected against uci-digits",
        reproduce_command=f"hf-nft quickstart --output {output}" + (" --fast" if fast else ""),
    )
    checks = claim_checks(report)
    write_text(output / "timings.json", json.dumps({"seconds": seconds, "checks": checks}, indent=2) + "\n")
    return QuickstartResult(output, report, seconds, checks)
