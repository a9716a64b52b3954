"""The MAP quickstart: mask the quickstart's digit classifier (``mnist``) against ``uci-digits`` in one of MAP's
three settings, measure the source and target drops, and attack the masked model with the harness.

What the owner uses in each setting (the evaluation below always uses the real test sets of both domains):

- ``source-available``: labelled ``mnist`` train and ``uci-digits`` train;
- ``source-free``: ``uci-digits`` train and the model; pseudo-source images are synthesised from the model;
- ``data-free``: the model only; pseudo-source images are synthesised from it, and target stand-ins are those
  images re-rendered as ``uci-digits`` looks (halved resolution, blocky upsampling).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import ConvNextForImageClassification, PreTrainedModel

from hf_nft.attacks.files import write_text
from hf_nft.config import MAP_SETTINGS, NFTConfig
from hf_nft.data import IMAGE_SIZE, load_domain
from hf_nft.evaluation.transfer import TransferResult, measure_transfer, transfer_table
from hf_nft.methods._synthesis import as_dataset, blocky, synthesize_inputs
from hf_nft.quickstart import (
    ORIGINAL_DOMAIN,
    RESTRICTED_DOMAIN,
    pretrain_reference,
    quiet_training_arguments,
)
from hf_nft.trainer import NFTTrainer


def map_config(output_dir: str | Path, setting: str, fast: bool = False, seed: int = 0, **overrides: Any) -> NFTConfig:
    """The quickstart's MAP settings (``fast`` shortens the run for tests and smoke checks). Without real source
    data the distillation keeps the source less well, so those settings may prune less (5% vs 20% per tensor)."""
    values = quiet_training_arguments(
        output_dir, max_steps=100 if fast else 500, learning_rate=3e-3, lr_scheduler_type="constant", seed=seed,
        nft_method="map", map_setting=setting, nft_loss="kl_uniform", adversary_batch_sizes=[32],
        query_batch_size=32, mask_max_sparsity=0.2 if setting == "source-available" else 0.05,
        max_grad_norm=0.0, guard_every=0,
    )
    values.update(overrides)
    return NFTConfig(**values)


def pseudo_source(model: PreTrainedModel, count: int, seed: int = 0, steps: int = 200) -> Dataset:
    """Images synthesised from ``model`` (confidence + smoothness), labelled by the model."""
    pixels, labels = synthesize_inputs(model, count, (1, IMAGE_SIZE, IMAGE_SIZE), steps=steps, seed=seed)
    return as_dataset(pixels, labels, model.config.num_labels)


def setting_data(setting: str, model: PreTrainedModel, fast: bool = False, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The owner's (train_dataset, restricted_dataset) in ``setting`` (see the module docstring)."""
    if setting == "source-available":
        return load_domain(ORIGINAL_DOMAIN, "train"), load_domain(RESTRICTED_DOMAIN, "train")
    synthetic = pseudo_source(model, 256 if fast else 512, seed=seed, steps=50 if fast else 100)
    if setting == "source-free":
        return synthetic, load_domain(RESTRICTED_DOMAIN, "train")
    standins = as_dataset(blocky(synthetic[:]["pixel_values"]), synthetic[:]["labels"], model.config.num_labels)
    return synthetic, standins


def mask_model(model: PreTrainedModel, args: NFTConfig, train: Dataset, restricted: Dataset,
               source_eval: Dataset | None = None) -> NFTTrainer:
    """Run MAP on ``model`` in place (its masks are baked in at the end) and return the trainer."""
    trainer = NFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=source_eval,
                         restricted_dataset=restricted)
    trainer.train()
    return trainer


@dataclass
class MapQuickstartResult:
    """Where the MAP quickstart wrote its outputs, the transfer figures, the attack report and the timings."""

    output_dir: Path
    setting: str
    mask_sparsity: float
    transfer: TransferResult
    report: Any
    seconds: dict[str, float]


def load_or_pretrain(output: Path, fast: bool, seed: int, progress: bool) -> PreTrainedModel:
    """``output/unprotected`` if it exists, else the quickstart's pre-training, saved there."""
    if (output / "unprotected" / "config.json").exists():
        return ConvNextForImageClassification.from_pretrained(output / "unprotected")
    return pretrain_reference(output, load_domain(ORIGINAL_DOMAIN, "train"), fast=fast, seed=seed, progress=progress)


def run_map_quickstart(output_dir: str | Path, setting: str = "source-available", fast: bool = False,
                       suite: str | None = None, seed: int = 0, progress: bool = True) -> MapQuickstartResult:
    """Load (or pre-train) the unprotected model, mask it in ``setting``, measure, attack; write under
    ``output_dir/map-<setting>/``: ``masked/`` (plain model + ``mask.safetensors``), ``transfer.json``,
    ``report.json``, ``curves.png``. ``suite="none"`` skips the attacks."""
    from hf_nft.evaluation.report import evaluate_protection

    if setting not in MAP_SETTINGS:
        raise ValueError(f"Unknown MAP setting {setting!r}; expected one of {MAP_SETTINGS}.")
    output = Path(output_dir)
    run_dir = output / f"map-{setting}"
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    unprotected = load_or_pretrain(output, fast, seed, progress)
    seconds["pretrain_or_load"] = time.perf_counter() - start
    source_test, target_test = load_domain(ORIGINAL_DOMAIN, "test"), load_domain(RESTRICTED_DOMAIN, "test")

    phase = time.perf_counter()
    train, restricted = setting_data(setting, unprotected, fast=fast, seed=seed)
    seconds["data"] = time.perf_counter() - phase

    phase = time.perf_counter()
    masked = ConvNextForImageClassification.from_pretrained(output / "unprotected")
    args = map_config(run_dir / "masked", setting, fast=fast, seed=seed, disable_tqdm=not progress)
    trainer = mask_model(masked, args, train, restricted)
    trainer.save_model()
    seconds["mask"] = time.perf_counter() - phase

    transfer = measure_transfer(unprotected, masked, source_test, target_test)
    summary = {"setting": setting, **transfer.to_dict(), "settings": trainer.method.settings()}
    write_text(run_dir / "transfer.json", json.dumps(summary, indent=2) + "\n")

    report = None
    suite = suite or ("quick" if fast else "default")
    if suite != "none":
        phase = time.perf_counter()
        report = evaluate_protection(masked, load_domain(RESTRICTED_DOMAIN, "train"), target_test, suite=suite,
                                     reference=unprotected, scratch=True, original_eval=source_test,
                                     progress=progress)
        seconds["attack"] = time.perf_counter() - phase
        report.to_json(run_dir / "report.json")
        report.plot(run_dir / "curves.png")
    seconds["total"] = time.perf_counter() - start
    write_text(run_dir / "timings.json", json.dumps(seconds, indent=2) + "\n")
    return MapQuickstartResult(run_dir, setting, summary["settings"]["mask_sparsity"], transfer, report, seconds)


def print_map_result(result: MapQuickstartResult) -> None:
    """Print the transfer table, the attack report (if any), the timings and where the outputs are."""
    print(transfer_table({result.setting: result.transfer}))
    print(f"mask sparsity: {result.mask_sparsity:.3f} of the masked weights pruned")
    if result.report is not None:
        print(result.report.table())
    print("\nTimings: " + ", ".join(f"{phase} {seconds:.0f}s" for phase, seconds in result.seconds.items()))
    print(f"Outputs in {result.output_dir}: masked/ (plain model + mask.safetensors), transfer.json, report.json")
