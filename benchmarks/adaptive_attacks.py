"""Adaptive attacks that no suite lists: does the quickstart's protection hold against a thinking attacker?

    python benchmarks/adaptive_attacks.py runs/quickstart

Each row changes the *model* or the *data* before the same fine-tuning attack (full fine-tuning, Adam 1e-3,
one labelled example per class, 300 steps, two seeds), applied to the protected, the unprotected and a
scratch model alike, and prints the restricted-domain accuracy after the attack:

- ``none``: the plain attack, for reference;
- ``restyle-bilinear`` / ``restyle-bicubic``: the restricted images are re-rendered closer to the original
  domain's style (the 8x8 digits upsampled smoothly instead of blockily), for training and evaluation, so a
  protection keyed on the restricted style may no longer recognise them;
- ``reinit-last-stage``: the last ConvNeXt stage and the head are re-initialised before fine-tuning (keep
  the generic early features, drop what the protection put on top);
- ``weight-noise``: Gaussian noise of 10% of each tensor's standard deviation is added to every weight first
  (to knock the model out of a protected basin).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from transformers import AutoModelForImageClassification, PreTrainedModel

from hf_nft.attacks.scratch import scratch_model
from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain
from hf_nft.evaluation.report import evaluate_protection

ATTACK = AttackSpec(kind="full_finetune", optimizer="adam", learning_rate=1e-3, steps=300, batch_size=16,
                    examples_per_class=1, eval_every=50)
SEEDS = (0, 1)


def reinit_last_stage(model: PreTrainedModel) -> PreTrainedModel:
    """A copy whose last encoder stage and classifier are freshly initialised (same seed for every model)."""
    fresh = scratch_model(model, seed=123)
    copied = copy.deepcopy(model)
    state = copied.state_dict()
    last = f"convnext.encoder.stages.{len(model.config.hidden_sizes) - 1}."
    for name, value in fresh.state_dict().items():
        if name.startswith((last, "classifier.", "convnext.layernorm.")):
            state[name] = value
    copied.load_state_dict(state)
    return copied


def weight_noise(model: PreTrainedModel) -> PreTrainedModel:
    """A copy with Gaussian noise of 10% of each parameter tensor's standard deviation added."""
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in copied.parameters():
            if parameter.numel() > 1:
                noise = torch.randn(parameter.shape, generator=generator) * parameter.std() * 0.1
                parameter.add_(noise.to(parameter.device))
    return copied


def unchanged(model: PreTrainedModel) -> PreTrainedModel:
    """The model as released."""
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("quickstart_dir", type=Path, help="Output folder of `hf-nft quickstart`.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    protected = AutoModelForImageClassification.from_pretrained(args.quickstart_dir / "protected")
    unprotected = AutoModelForImageClassification.from_pretrained(args.quickstart_dir / "unprotected")
    train, test = load_domain("uci-digits", "train"), load_domain("uci-digits", "test")
    rows = {
        "none": (unchanged, train, test),
        **{f"restyle-{mode}": (unchanged, load_domain("uci-digits", "train", resample=mode),
                               load_domain("uci-digits", "test", resample=mode)) for mode in ("bilinear", "bicubic")},
        "reinit-last-stage": (reinit_last_stage, train, test),
        "weight-noise": (weight_noise, train, test),
    }
    print(f"{'adaptive attack':<20}{'protected':>16}{'unprotected':>16}{'scratch':>16}   (before attack: p / u)")
    for name, (change, rows_train, rows_test) in rows.items():
        report = evaluate_protection(change(protected), rows_train, rows_test, suite=[ATTACK],
                                     reference=change(unprotected), seeds=SEEDS, progress=False)
        outcome = report.results[ATTACK.name]
        cells = [f"{outcome[role].final_mean:.3f} ± {outcome[role].final_std:.3f}" for role in report.roles]
        before = f"{report.before['protected']:.3f} / {report.before['unprotected']:.3f}"
        print(f"{name:<20}" + "".join(f"{cell:>16}" for cell in cells) + f"   ({before})")


if __name__ == "__main__":
    main()
