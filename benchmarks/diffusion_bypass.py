"""Bypass attempts on the diffusion quickstart's protected DDPM, beyond the quickstart's own attacks: Nesterov SGD
(an optimizer the protection never simulated), Adam at 3x and 1/3 of the simulated rate, a 3x longer Adam budget,
re-initialising the UNet's output layers before fine-tuning (the layers that scale the noise prediction), and a
change of rendering: ``uci-digits`` are 8x8 images upsampled 2x by repeating pixels, so an attacker can fine-tune on
smooth (bilinear) renderings instead, which hide the blocks, and turn samples back into blocky images afterwards
(2x2 average, then repeat). Also prints the protected / unprotected weight-norm ratio per parameter tensor (a
protection that merely rescales weights would show up there).

    OMP_NUM_THREADS=1 python benchmarks/diffusion_bypass.py runs/quickstart/diffusion
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, UNet2DModel
from transformers import AutoModelForImageClassification

from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain
from hf_nft.diffusion.domain_classifier import restricted_fraction
from hf_nft.diffusion.evaluation import SampleSettings, evaluate_diffusion_protection
from hf_nft.diffusion.training import small_unet
from hf_nft.diffusion_quickstart import EVAL_IMAGES, FULL_FINETUNE
from hf_nft.quickstart import RESTRICTED_DOMAIN


def with_fresh_output_conv(model: UNet2DModel, seed: int = 0, norm: bool = False) -> UNet2DModel:
    """A copy of ``model`` whose ``conv_out`` (and with ``norm`` also ``conv_norm_out``) is re-initialised (the
    attacker keeps every other weight)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh.conv_out.reset_parameters()
    if norm:
        fresh.conv_norm_out.reset_parameters()
    return fresh


def norm_ratios(protected: UNet2DModel, unprotected: UNet2DModel) -> dict[str, float]:
    """``||protected|| / ||unprotected||`` per parameter tensor."""
    reference = dict(unprotected.named_parameters())
    return {name: float(p.detach().norm() / reference[name].detach().norm().clamp(min=1e-12))
            for name, p in protected.named_parameters()}


def reblock(images: torch.Tensor) -> torch.Tensor:
    """Smooth renderings turned back into blocky ones: the 2x2 average, each value repeated 2x2."""
    return F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")


def attack(name: str, steps: int = 150, rate: float = 1e-3, optimizer: str = "adam") -> AttackSpec:
    """Full fine-tuning at batch 32, evaluated at 6 points."""
    return AttackSpec(kind="diffusion_finetune", name=name, optimizer=optimizer, learning_rate=rate, batch_size=32,
                      steps=steps, eval_every=steps // 6)


def smooth_rendering_attack(models: dict[str, UNet2DModel], output: Path) -> None:
    """Fine-tune on bilinear renderings; score denoising on held-out ones and the re-blocked samples."""
    train = load_domain(RESTRICTED_DOMAIN, resample="bilinear")
    test = load_domain(RESTRICTED_DOMAIN, "test", resample="bilinear").select(range(EVAL_IMAGES["restricted"]))
    classifier = AutoModelForImageClassification.from_pretrained(output / "domain_classifier")
    evaluation = evaluate_diffusion_protection(models, train, test, [attack("smooth_rendering_adam")],
                                               samples=SampleSettings(classifier, 64, 25), progress=False)
    print(evaluation.report.table())
    for role, images in evaluation.samples["smooth_rendering_adam"].items():
        print(f"  {role}: samples classified restricted after re-blocking "
              f"{restricted_fraction(classifier, reblock(images)):.3f}")


def main(output: Path) -> None:
    torch.set_num_threads(1)
    models = {role: DDPMPipeline.from_pretrained(output / role).unet for role in ("protected", "unprotected")}
    ratios = sorted(norm_ratios(models["protected"], models["unprotected"]).items(), key=lambda item: item[1])
    print("weight-norm ratio protected/unprotected, lowest and highest:",
          [(name, round(ratio, 3)) for name, ratio in ratios[:3] + ratios[-3:]])
    models["scratch"] = small_unet(seed=1)
    train = load_domain(RESTRICTED_DOMAIN)
    test = load_domain(RESTRICTED_DOMAIN, "test").select(range(EVAL_IMAGES["restricted"]))
    conv_only = {role: with_fresh_output_conv(models[role]) for role in ("protected", "unprotected")}
    both = {role: with_fresh_output_conv(models[role], norm=True) for role in ("protected", "unprotected")}
    scratch = {"scratch": models["scratch"]}
    runs = [
        (attack("nesterov_0.003", rate=3e-3, optimizer="nesterov"), models),
        (attack("adam_0.003", rate=3e-3), models),
        (attack("adam_0.0003", rate=3e-4), models),
        (attack("adam_450_steps", steps=450), {k: models[k] for k in ("protected", "scratch")}),
        (attack("fresh_conv_out_adam"), {**conv_only, **scratch}),
        (attack("fresh_output_layers_adam"), {**both, **scratch}),
    ]
    for spec, roles in runs:
        report = evaluate_diffusion_protection(roles, train, test, [spec], progress=False).report
        print(report.table())
        for role, outcome in report.results[spec.name].items():
            print(f"  {role}: steps {outcome.steps} MSE {[round(v, 4) for v in outcome.mean_curve]}")
    smooth_rendering_attack(models, output)
    print(f"(the quickstart's own attack is {FULL_FINETUNE}: Adam 1e-3, 150 steps, batch 32)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart/diffusion"))
