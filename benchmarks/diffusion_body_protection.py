"""Experiments that try to move the diffusion quickstart's protection from the output layer into the UNet's body
(README, "Moving the protection out of the output layer"). Each run protects the quickstart's pre-trained UNet
with the quickstart's previous settings (300 alternation steps, 400 repair steps to 1e-4, no stop target) plus one
change, then attacks it (Adam 1e-3, LoRA, Adam 3e-4, and re-initialising ``conv_norm_out`` + ``conv_out`` before
Adam 1e-3; 150 steps at batch 32) and prints the restricted MSE curves.

Changes: ``--reset P`` (simulated adversaries reset the output layers with probability P) and ``--readout W``
(NTR also adds ``-W log`` of the best ridge-refit output convolution's held-out error on restricted images, on the
features of the released output norm, of a reset one, or both; ``--readout-in-repair`` keeps it in the final
NTR-only steps). Not part of the package: no setting kept the original domain within 10% and held the reset.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_body_protection.py runs/quickstart/diffusion --readout 0.3
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusion_bypass import with_fresh_output_conv
from torch import nn

from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_domain
from hf_nft.diffusion.denoising import IMAGE_KEY, add_noise
from hf_nft.diffusion.evaluation import evaluate_diffusion_protection
from hf_nft.diffusion_quickstart import EVAL_IMAGES, protection_config
from hf_nft.methods.sophon_diffusion import SophonDiffusion
from hf_nft.registry import METHODS
from hf_nft.trainer import NFTTrainer

EXPERIMENT = "sophon_diffusion_body_readout_experiment"
OPTIONS: dict[str, Any] = {"weight": 0.0, "features": "released", "in_repair": False}


def ridge_readout_residual(features: torch.Tensor, noise: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Held-out MSE of a ridge regression from ``kernel_size`` patches of ``features`` to ``noise`` (fitted on the
    first half of the pixels, scored on the second), differentiable in ``features``."""
    patches = F.unfold(features, kernel_size, padding=kernel_size // 2).transpose(1, 2)
    inputs = patches.reshape(-1, patches.shape[-1])
    inputs = torch.cat([inputs, torch.ones_like(inputs[:, :1])], dim=1)
    targets = noise.permute(0, 2, 3, 1).reshape(-1, noise.shape[1])
    half = inputs.shape[0] // 2
    gram = inputs[:half].T @ inputs[:half] / half
    ridge = 1e-3 * gram.diagonal().mean()
    weights = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0]), inputs[:half].T @ targets[:half] / half)
    return (targets[half:] - inputs[half:] @ weights).pow(2).mean()


def output_readout_residual(model: nn.Module, images: torch.Tensor, method: SophonDiffusion) -> torch.Tensor:
    """The best refit ``conv_out``'s held-out error on noised ``images``, from the body's output after the
    released ``conv_norm_out``, after a reset one (plain group norm), or averaged over both."""
    captured: dict[str, torch.Tensor] = {}
    hook = model.conv_norm_out.register_forward_hook(lambda module, inputs, output: captured.update(body=inputs[0]))
    try:
        noisy, timesteps, noise = add_noise(images, method.scheduler, method._generator,
                                            max_timestep=method.suppression_max_timestep)
        model(sample=noisy, timestep=timesteps)
    finally:
        hook.remove()
    body, norm = captured["body"], model.conv_norm_out
    chosen = []
    if OPTIONS["features"] in ("released", "both"):
        chosen.append(F.silu(norm(body)))
    if OPTIONS["features"] in ("reset", "both"):
        chosen.append(F.silu(F.group_norm(body, norm.num_groups, eps=norm.eps)))
    return sum(ridge_readout_residual(x, noise, model.conv_out.kernel_size[0]) for x in chosen) / len(chosen)


@METHODS.register(EXPERIMENT)
class SophonDiffusionBodyReadout(SophonDiffusion):
    """``sophon_diffusion`` whose NTR also raises the best refit output layer's error on restricted images."""

    def reinforcement_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        loss = super().reinforcement_loss(model, inputs)
        if OPTIONS["weight"] == 0 or (self.in_final_steps() and not OPTIONS["in_repair"]):
            return loss
        if self._batches is None:
            self._batches = self.trainer.restricted_batches()
        unwrapped = self.trainer.accelerator.unwrap_model(model)
        residual = output_readout_residual(unwrapped, next(self._batches)[IMAGE_KEY], self)
        return loss - OPTIONS["weight"] * residual.clamp(min=1e-12).log()


def attack_specs() -> list[AttackSpec]:
    """Adam 1e-3 (the quickstart's attack), LoRA (Adam 3e-3) and Adam 3e-4: 150 steps at batch 32."""
    common = {"kind": "diffusion_finetune", "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32,
              "steps": 150, "eval_every": 50}
    return [AttackSpec(**{**common, "name": "adam_1e-3"}),
            AttackSpec(**{**common, "name": "lora", "kind": "diffusion_lora", "learning_rate": 3e-3}),
            AttackSpec(**{**common, "name": "adam_3e-4", "learning_rate": 3e-4})]


def main() -> None:
    """Protect with the chosen change, attack, print one table per model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("quickstart", type=Path, help="The diffusion quickstart's output folder.")
    parser.add_argument("--reset", type=float, default=0.0)
    parser.add_argument("--readout", type=float, default=0.0)
    parser.add_argument("--features", choices=("released", "reset", "both"), default="released")
    parser.add_argument("--readout-in-repair", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("runs/diffusion_body_protection"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    OPTIONS.update(weight=args.readout, features=args.features, in_repair=args.readout_in_repair)
    original_train = load_domain("mnist")
    original_test = load_domain("mnist", "test").select(range(EVAL_IMAGES["original"]))
    restricted_train = load_domain("uci-digits")
    restricted_test = load_domain("uci-digits", "test").select(range(EVAL_IMAGES["restricted"]))
    model = UNet2DModel.from_pretrained(args.quickstart / "unprotected" / "unet")
    # The quickstart's settings when these experiments ran: 300 steps of alternation, then 400 of repair.
    config = protection_config(args.output, nft_method=EXPERIMENT, head_reset_probability=args.reset,
                               max_steps=700, diffusion_final_ntr_steps=400, diffusion_final_ntr_learning_rate=1e-4,
                               diffusion_stop_adversary_loss=0.0)
    NFTTrainer(model=model, args=config, train_dataset=original_train, restricted_dataset=restricted_train).train()
    fresh = with_fresh_output_conv(model, norm=True)
    reset_attack = attack_specs()[0].replace(name="reset_output_adam_1e-3")
    for models, specs in (({"protected": model}, attack_specs()), ({"protected, output reset": fresh}, [reset_attack])):
        evaluation = evaluate_diffusion_protection(models, restricted_train, restricted_test, specs,
                                                   original_eval=original_test, progress=False)
        print(evaluation.report.table())


if __name__ == "__main__":
    main()
