"""Bypass attempts on the diffusion quickstart's protected DDPM, beyond the quickstart's own attacks: Nesterov SGD
(an optimizer the protection never simulated), Adam at 3x and 1/3 of the simulated rate, a 3x longer Adam budget,
and re-initialising the UNet's output convolution before fine-tuning (the layer that scales the noise prediction). Also prints the protected / unprotected
weight-norm ratio per parameter tensor (a protection that merely rescales weights would show up there).

    OMP_NUM_THREADS=1 python benchmarks/diffusion_bypass.py runs/quickstart/diffusion
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from diffusers import DDPMPipeline, UNet2DModel

from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain
from hf_nft.diffusion.evaluation import evaluate_diffusion_protection
from hf_nft.diffusion.training import small_unet
from hf_nft.diffusion_quickstart import EVAL_IMAGES


def with_fresh_output_conv(model: UNet2DModel, seed: int = 0) -> UNet2DModel:
    """A copy of ``model`` whose ``conv_out`` is re-initialised (the attacker keeps every other weight)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh.conv_out.reset_parameters()
    return fresh


def norm_ratios(protected: UNet2DModel, unprotected: UNet2DModel) -> dict[str, float]:
    """``||protected|| / ||unprotected||`` per parameter tensor."""
    reference = dict(unprotected.named_parameters())
    return {name: float(p.detach().norm() / reference[name].detach().norm().clamp(min=1e-12))
            for name, p in protected.named_parameters()}


def main(output: Path) -> None:
    torch.set_num_threads(1)
    models = {role: DDPMPipeline.from_pretrained(output / role).unet for role in ("protected", "unprotected")}
    ratios = sorted(norm_ratios(models["protected"], models["unprotected"]).items(), key=lambda item: item[1])
    print("weight-norm ratio protected/unprotected, lowest and highest:",
          [(name, round(ratio, 3)) for name, ratio in ratios[:3] + ratios[-3:]])
    models["scratch"] = small_unet(seed=1)
    train = load_domain("uci-digits")
    test = load_domain("uci-digits", "test").select(range(EVAL_IMAGES["restricted"]))
    nesterov = AttackSpec(kind="diffusion_finetune", name="nesterov_0.003", optimizer="nesterov",
                          learning_rate=3e-3, batch_size=32, steps=150, eval_every=30)
    longer = AttackSpec(kind="diffusion_finetune", name="adam_450_steps", optimizer="adam", learning_rate=1e-3,
                        batch_size=32, steps=450, eval_every=75)
    adam = AttackSpec(kind="diffusion_finetune", name="fresh_conv_out_adam", optimizer="adam", learning_rate=1e-3,
                      batch_size=32, steps=150, eval_every=30)
    rates = [AttackSpec(kind="diffusion_finetune", name=f"adam_{rate:g}", optimizer="adam", learning_rate=rate,
                        batch_size=32, steps=150, eval_every=50) for rate in (3e-3, 3e-4)]
    fresh = {role: with_fresh_output_conv(models[role]) for role in ("protected", "unprotected")}
    for spec, roles in ((nesterov, models), *((spec, models) for spec in rates),
                        (longer, {k: models[k] for k in ("protected", "scratch")}),
                        (adam, {**fresh, "scratch": models["scratch"]})):
        report = evaluate_diffusion_protection(roles, train, test, [spec], progress=False).report
        print(report.table())
        for role, outcome in report.results[spec.name].items():
            print(f"  {role}: steps {outcome.steps} MSE {[round(v, 4) for v in outcome.mean_curve]}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart/diffusion"))
