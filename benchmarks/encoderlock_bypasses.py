"""Cheap bypasses of an EncoderLock-ed quickstart encoder that the issue does not list.

    python benchmarks/encoderlock_bypasses.py runs/quickstart/encoderlock-supervised

``RUN`` is a folder written by ``hf-nft quickstart --mode encoderlock`` (its parent holds ``unprotected/``).
Each row is probed on the locked, the unprotected and a random-init encoder alike (prohibited-domain test
accuracy of the strongest of the linear and MLP probes, 10 labelled examples per class, seeds 0 and 1):

- ``plain``: the probes on the encoder's own features, for reference;
- ``restyle-bilinear`` / ``restyle-bicubic``: the attacker re-renders the 8x8 prohibited digits smoothly (training
  and test), closer to the authorized style, so a lock keyed on the blocky look may no longer recognise them;
- ``stage-2-features``: the attacker drops the last encoder stage and probes the pooled output of the one before
  (where fewer weights may have been changed);
- ``full-finetune``: not probing at all: the harness's full fine-tuning (Adam 1e-3, 300 steps), beyond the
  threat model EncoderLock defends.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForImageClassification, PreTrainedModel

from hf_nft.attacks.scratch import scratch_model
from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain, per_class_subset
from hf_nft.evaluation.probing import best_probe, probe_domain, probe_suite
from hf_nft.evaluation.report import evaluate_protection
from hf_nft.methods.encoderlock import PROBE_KINDS, probe_accuracy, train_probe
from hf_nft.quickstart import RESTRICTED_DOMAIN

EXAMPLES_PER_CLASS = 10
SEEDS = (0, 1)


@torch.no_grad()
def stage_features(model: PreTrainedModel, pixels: torch.Tensor, stage: int) -> torch.Tensor:
    """Globally average-pooled output of ConvNeXt encoder stage ``stage`` (0-based)."""
    captured: list[torch.Tensor] = []
    hook = model.convnext.encoder.stages[stage].register_forward_hook(lambda m, i, out: captured.append(out))
    model.eval()
    try:
        model(pixel_values=pixels)
    finally:
        hook.remove()
    return captured[0].mean(dim=(2, 3))


def stage_probe(model: PreTrainedModel, stage: int) -> float:
    """The strongest probe's mean test accuracy (over seeds) on pooled stage features of the prohibited data."""
    test = load_domain(RESTRICTED_DOMAIN, "test")[:]
    test_features = stage_features(model, test["pixel_values"], stage)
    scores = []
    for seed in SEEDS:
        train = per_class_subset(load_domain(RESTRICTED_DOMAIN, "train"), EXAMPLES_PER_CLASS, seed)[:]
        features = stage_features(model, train["pixel_values"], stage)
        generator = torch.Generator().manual_seed(seed)
        scores.append(max(
            probe_accuracy(train_probe(kind, features, train["labels"], 10, 300, 128, generator), test_features,
                           test["labels"])
            for kind in PROBE_KINDS
        ))
    return statistics.fmean(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="An encoderlock-<setting> folder of the EncoderLock quickstart.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    locked = AutoModelForImageClassification.from_pretrained(args.run / "locked")
    unprotected = AutoModelForImageClassification.from_pretrained(args.run.parent / "unprotected")
    models: dict[str, nn.Module] = {"locked": locked, "unprotected": unprotected, "random-init": scratch_model(locked)}
    suite = probe_suite(EXAMPLES_PER_CLASS, seeds=SEEDS).attacks[:2]  # linear and MLP probes
    rows: dict[str, dict[str, float]] = {}
    for resample in (None, "bilinear", "bicubic"):
        train = load_domain(RESTRICTED_DOMAIN, "train", resample=resample)
        test = load_domain(RESTRICTED_DOMAIN, "test", resample=resample)
        report = probe_domain(locked, unprotected, train, test, probe_suite(EXAMPLES_PER_CLASS, seeds=SEEDS),
                              progress=False) if resample is None else None
        if report is None:
            from hf_nft.attacks.suite import Suite

            report = probe_domain(locked, unprotected, train, test, Suite("probes", suite, list(SEEDS)),
                                  progress=False)
        name = "plain (with tuned)" if resample is None else f"restyle-{resample}"
        rows[name] = dict(zip(models, (best_probe(report, role) for role in ("protected", "unprotected", "scratch"))))
    rows["stage-2-features"] = {role: stage_probe(model, 1) for role, model in models.items()}
    attack = AttackSpec(kind="full_finetune", optimizer="adam", learning_rate=1e-3, steps=300, batch_size=16,
                        examples_per_class=EXAMPLES_PER_CLASS, eval_every=100)
    report = evaluate_protection(locked, load_domain(RESTRICTED_DOMAIN, "train"), load_domain(RESTRICTED_DOMAIN, "test"),
                                 suite=[attack], reference=unprotected, seeds=SEEDS, progress=False)
    outcome = report.results[attack.name]
    rows["full-finetune"] = {"locked": outcome["protected"].final_mean,
                             "unprotected": outcome["unprotected"].final_mean,
                             "random-init": outcome["scratch"].final_mean}
    print(f"{'bypass':<22}{'locked':>10}{'unprotected':>13}{'random-init':>13}")
    for name, values in rows.items():
        print(f"{name:<22}" + "".join(f"{values[role]:>{w}.3f}" for role, w in zip(models, (10, 13, 13))))


if __name__ == "__main__":
    main()
