"""Time an attack suite on a small ResNet trained briefly on mnist (restricted domain: uci-digits).

Three models are attacked: the trained one (as "protected"), a copy of it (as the unprotected reference)
and a fresh scratch model. The reference cost, measured in the same run, is one plain full fine-tuning of one
model (Adam, the suite's default steps and batch size); the benchmark prints the suite's wall time beside it
and their ratio, then the attack table; it writes report.json and curves.png.

    python benchmarks/attack_suite.py --suite default --output /tmp/attack-bench
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from transformers import ResNetConfig, ResNetForImageClassification

from hf_nft.attacks.runner import run_attack
from hf_nft.attacks.spec import AttackSpec
from hf_nft.attacks.suite import load_suite
from hf_nft.data import load_domain
from hf_nft.evaluation.report import evaluate_protection


def trained_resnet(steps: int) -> ResNetForImageClassification:
    """A quickstart-sized ResNet trained on mnist for ``steps`` Adam steps (the harness's own loop)."""
    torch.manual_seed(0)
    config = ResNetConfig(num_channels=1, embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1],
                          layer_type="basic", num_labels=10)
    spec = AttackSpec(kind="full_finetune", steps=steps, eval_every=steps, batch_size=64, learning_rate=3e-3)
    run = run_attack(ResNetForImageClassification(config), spec, load_domain("mnist", "train"),
                     load_domain("mnist", "test"), return_model=True)
    print(f"mnist accuracy after {steps} training steps: {run.final:.3f}")
    return run.model


def reference_seconds(model: ResNetForImageClassification, suite: str) -> float:
    """Wall time of one plain full fine-tuning of ``model`` on uci-digits at the suite's default budget."""
    defaults = load_suite(suite).attacks[0]
    spec = AttackSpec(kind="full_finetune", steps=defaults.steps, eval_every=defaults.steps,
                      batch_size=defaults.batch_size, learning_rate=1e-3)
    start = time.perf_counter()
    run_attack(copy.deepcopy(model), spec, load_domain("uci-digits", "train"), load_domain("uci-digits", "test"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="attack-bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = trained_resnet(args.train_steps)
    reference = reference_seconds(model, args.suite)
    start = time.perf_counter()
    report = evaluate_protection(
        model,
        load_domain("uci-digits", "train"),
        load_domain("uci-digits", "test"),
        suite=args.suite,
        reference=copy.deepcopy(model),
        original_eval=load_domain("mnist", "test"),
    )
    seconds = time.perf_counter() - start
    print(f"{'what':<46}{'seconds':>10}{'ratio':>8}")
    print(f"{'reference: one full fine-tuning, one model':<46}{reference:>10.1f}{1.0:>8.2f}")
    print(f"{f'suite {args.suite!r} on 3 models':<46}{seconds:>10.1f}{seconds / reference:>8.2f}")
    print(report.table())
    report.to_json(f"{args.output}/report.json")
    report.plot(f"{args.output}/curves.png")


if __name__ == "__main__":
    main()
