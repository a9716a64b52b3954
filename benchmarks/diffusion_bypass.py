"""Bypass attempts on the diffusion quickstart's protected DDPM, beyond the quickstart's own attacks: Nesterov SGD
(an optimizer outside the diffusion adversary pool) and a 3x longer Adam budget.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_bypass.py runs/quickstart/diffusion
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from diffusers import DDPMPipeline

from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain
from hf_nft.diffusion.evaluation import evaluate_diffusion_protection
from hf_nft.diffusion.training import small_unet
from hf_nft.diffusion_quickstart import EVAL_IMAGES


def main(output: Path) -> None:
    torch.set_num_threads(1)
    models = {role: DDPMPipeline.from_pretrained(output / role).unet for role in ("protected", "unprotected")}
    models["scratch"] = small_unet(seed=1)
    train = load_domain("uci-digits")
    test = load_domain("uci-digits", "test").select(range(EVAL_IMAGES["restricted"]))
    nesterov = AttackSpec(kind="diffusion_finetune", name="nesterov_0.003", optimizer="nesterov",
                          learning_rate=3e-3, batch_size=32, steps=150, eval_every=30)
    longer = AttackSpec(kind="diffusion_finetune", name="adam_450_steps", optimizer="adam", learning_rate=1e-3,
                        batch_size=32, steps=450, eval_every=75)
    for spec, roles in ((nesterov, models), (longer, {k: models[k] for k in ("protected", "scratch")})):
        report = evaluate_diffusion_protection(roles, train, test, [spec], progress=False).report
        print(report.table())
        for role, outcome in report.results[spec.name].items():
            print(f"  {role}: steps {outcome.steps} MSE {[round(v, 4) for v in outcome.mean_curve]}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart/diffusion"))
