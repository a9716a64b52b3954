"""The EncoderLock quickstart: lock the quickstart digit classifier's encoder (authorized ``mnist``, prohibited
``uci-digits``) in one of three settings, then probe it with the attack harness on both domains beside the
unprotected and a random-init encoder.

What the owner uses in each setting (the probes always use the real data of both domains):

- ``supervised``: labelled ``mnist`` train and labelled ``uci-digits`` train;
- ``unsupervised``: labelled ``mnist`` train and ``uci-digits`` train *with its labels removed*;
- ``zero-shot``: labelled ``mnist`` train only; stand-ins for ``uci-digits`` are the mnist images re-rendered
  as 8x8 scans look (half resolution, blocky upsampling; the ``blocky`` transform).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import ConvNextForImageClassification

from hf_nft.attacks.files import write_text
from hf_nft.config import ENCODERLOCK_SETTINGS, NFTConfig
from hf_nft.data import load_domain, load_renderings
from hf_nft.evaluation.probing import best_probe, probe_domain, probe_suite
from hf_nft.evaluation.report import ProtectionReport
from hf_nft.map_quickstart import load_or_pretrain
from hf_nft.quickstart import ORIGINAL_DOMAIN, RESTRICTED_DOMAIN, quiet_training_arguments
from hf_nft.trainer import NFTTrainer


def encoderlock_config(output_dir: str | Path, setting: str, fast: bool = False, seed: int = 0,
                       **overrides: Any) -> NFTConfig:
    """The quickstart's EncoderLock settings (``fast`` shortens the run for tests and smoke checks)."""
    values = quiet_training_arguments(
        output_dir, max_steps=60 if fast else 400, learning_rate=1e-2, lr_scheduler_type="constant", seed=seed,
        nft_method="encoderlock", encoderlock_setting=setting, encoderlock_round_steps=20,
        encoderlock_weights_per_round=500, encoderlock_probe_steps=100 if fast else 200, max_grad_norm=0.0,
        guard_every=0,
    )
    values.update(overrides)
    return NFTConfig(**values)


def setting_data(setting: str, renderings: tuple[str, ...] | None = None) -> tuple[Dataset, Dataset | None]:
    """The owner's (authorized train_dataset, prohibited restricted_dataset) in ``setting``; ``renderings``
    (resample modes, e.g. ``("nearest", "bilinear")``) locks the prohibited digits in several renderings."""
    if setting not in ENCODERLOCK_SETTINGS:
        raise ValueError(f"Unknown EncoderLock setting {setting!r}; expected one of {ENCODERLOCK_SETTINGS}.")
    authorized = load_domain(ORIGINAL_DOMAIN, "train")
    if setting == "zero-shot":
        return authorized, None
    prohibited = load_domain(RESTRICTED_DOMAIN, "train")
    if renderings:
        prohibited = load_renderings(RESTRICTED_DOMAIN, "train", renderings)
    if setting == "unsupervised":
        prohibited = prohibited.remove_columns("labels")
    return authorized, prohibited


@dataclass
class EncoderLockResult:
    """Outputs, probe reports on both domains, the share of weights changed and the timings of one run."""

    output_dir: Path
    setting: str
    changes: dict[str, Any]
    prohibited: ProtectionReport | None
    authorized: ProtectionReport | None
    seconds: dict[str, float]

    def summary(self) -> dict[str, Any]:
        """Strongest-probe accuracy per domain and encoder, and the issue's checks."""
        summary: dict[str, Any] = {"setting": self.setting, **self.changes}
        if self.prohibited is None or self.authorized is None:
            return summary
        for domain, report in (("prohibited", self.prohibited), ("authorized", self.authorized)):
            for role in report.roles:
                summary[f"{domain}_{role}"] = best_probe(report, role)
        gain = summary["prohibited_unprotected"] - summary["prohibited_scratch"]
        summary["advantage_cut"] = (
            1 - (summary["prohibited_protected"] - summary["prohibited_scratch"]) / gain if gain > 0 else float("nan")
        )
        summary["checks"] = {
            "prohibited: protected <= random-init + 5": summary["prohibited_protected"]
            <= summary["prohibited_scratch"] + 0.05,
            "authorized: protected >= unprotected - 3": summary["authorized_protected"]
            >= summary["authorized_unprotected"] - 0.03,
            "advantage over random-init cut by >= half": summary["advantage_cut"] >= 0.5,
        }
        return summary


def run_encoderlock_quickstart(output_dir: str | Path, setting: str = "supervised", fast: bool = False,
                               seed: int = 0, progress: bool = True, probes: bool = True,
                               renderings: tuple[str, ...] | None = None) -> EncoderLockResult:
    """Load (or pre-train) the unprotected model, lock its encoder in ``setting``, reload it with plain
    ``from_pretrained`` and probe it; write under ``output_dir/encoderlock-<setting>/``: ``locked/`` (the
    model), ``prohibited_report.json``, ``authorized_report.json``, ``summary.json``, ``curves_*.png``."""
    output = Path(output_dir)
    run_dir = output / f"encoderlock-{setting}"
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    unprotected = load_or_pretrain(output, fast, seed, progress)
    seconds["pretrain_or_load"] = time.perf_counter() - start
    train, restricted = setting_data(setting, renderings)

    phase = time.perf_counter()
    model = ConvNextForImageClassification.from_pretrained(output / "unprotected")
    trainer = NFTTrainer(model=model, args=encoderlock_config(run_dir / "locked", setting, fast=fast, seed=seed,
                                                              disable_tqdm=not progress),
                         train_dataset=train, restricted_dataset=restricted)
    trainer.train()
    trainer.save_model()
    changes = trainer.method.changes()
    seconds["lock"] = time.perf_counter() - phase
    locked = ConvNextForImageClassification.from_pretrained(run_dir / "locked")

    reports: dict[str, ProtectionReport | None] = {"prohibited": None, "authorized": None}
    if probes:
        phase = time.perf_counter()
        suite = probe_suite(trials=4 if fast else 8, seeds=(0,) if fast else (0, 1), steps=150 if fast else 300)
        domains = {domain: (load_domain(name, "train"), load_domain(name, "test"))
                   for domain, name in (("prohibited", RESTRICTED_DOMAIN), ("authorized", ORIGINAL_DOMAIN))}
        reports.update(probe_domains(locked, unprotected, domains, suite, run_dir, progress))
        seconds["probe"] = time.perf_counter() - phase
    return finish_result(run_dir, setting, changes, reports, seconds, start)


def probe_domains(locked: Any, unprotected: Any, domains: dict[str, tuple[Dataset, Dataset]], suite: Any,
                  run_dir: Path, progress: bool, collate_fn: Any = None) -> dict[str, ProtectionReport]:
    """Probe ``locked`` beside ``unprotected`` and a random-init encoder on each ``domains[name] = (train,
    test)``; write ``{name}_report.json`` and ``curves_{name}.png`` under ``run_dir``."""
    reports = {}
    for domain, (train, test) in domains.items():
        report = probe_domain(locked, unprotected, train, test, suite, progress=progress, collate_fn=collate_fn)
        report.to_json(run_dir / f"{domain}_report.json")
        report.plot(run_dir / f"curves_{domain}.png")
        reports[domain] = report
    return reports


def finish_result(run_dir: Path, setting: str, changes: dict[str, Any],
                  reports: dict[str, ProtectionReport | None], seconds: dict[str, float],
                  start: float) -> EncoderLockResult:
    """The run's result, with ``summary.json`` (the summary row, its checks and the timings) written."""
    seconds["total"] = time.perf_counter() - start
    result = EncoderLockResult(run_dir, setting, changes, reports["prohibited"], reports["authorized"], seconds)
    write_text(run_dir / "summary.json", json.dumps({**result.summary(), "seconds": seconds}, indent=2) + "\n")
    return result


def print_encoderlock_result(result: EncoderLockResult) -> None:
    """Print the probe reports, the summary with the checks, the timings and where the outputs are."""
    for domain in ("prohibited", "authorized"):
        report = getattr(result, domain)
        if report is not None:
            print(f"\n{domain} domain (scratch = random-init encoder):\n{report.table()}")
    summary = result.summary()
    print(f"\nweights changed: {summary['weights_changed']} of {summary['encoder_parameters']} encoder parameters "
          f"({100 * summary['weights_changed_share']:.3f}%)")
    for name, holds in summary.get("checks", {}).items():
        print(f"  [{'ok' if holds else 'FAIL'}] {name}")
    print("\nTimings: " + ", ".join(f"{phase} {seconds:.0f}s" for phase, seconds in result.seconds.items()))
    print(f"Outputs in {result.output_dir}: locked/ (plain model), *_report.json, summary.json")


def summary_table(summaries: list[dict[str, Any]]) -> str:
    """One row per run (``summary.json`` contents): strongest-probe accuracy on each domain for the locked,
    unprotected and random-init encoders, the share of encoder weights changed and the advantage cut."""
    header = (f"{'setting':<14}{'prohibited: locked':>19}{'unprotected':>12}{'random-init':>12}"
              f"{'authorized: locked':>20}{'unprotected':>12}{'random-init':>12}{'weights changed':>17}"
              f"{'advantage cut':>15}")
    rows = [header]
    for s in summaries:
        rows.append(
            f"{s['setting']:<14}{s['prohibited_protected']:>19.3f}{s['prohibited_unprotected']:>12.3f}"
            f"{s['prohibited_scratch']:>12.3f}{s['authorized_protected']:>20.3f}{s['authorized_unprotected']:>12.3f}"
            f"{s['authorized_scratch']:>12.3f}{100 * s['weights_changed_share']:>16.2f}%{100 * s['advantage_cut']:>14.0f}%"
        )
    return "\n".join(rows)
