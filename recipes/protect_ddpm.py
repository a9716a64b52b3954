"""Protect a DDPM with SOPHON's diffusion mode (the diffusion quickstart's protection step) as a standalone script.

    python recipes/protect_ddpm.py --output_dir runs/ddpm-recipe --max_steps 400 --learning_rate 3e-4 \
        --inner_steps 8 --diffusion_nft_loss dos

Every ``NFTConfig`` / ``TrainingArguments`` field is a flag; ``--nft_method sophon_diffusion``,
``--remove_unused_columns false`` and ``--guard_every 0`` are set for you, and fields left at the Trainer's
defaults take the quickstart's values (adversary pool, batch sizes). Without ``--model_name_or_path`` (a
``DDPMPipeline`` folder) the script first pre-trains the quickstart's small UNet on ``mnist``. The protected model is
written to ``--output_dir`` as a ``DDPMPipeline`` folder; its denoising MSE on both domains is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diffusers import DDPMPipeline
from transformers import HfArgumentParser

from hf_nft.config import NFTConfig
from hf_nft.data import load_domain
from hf_nft.diffusion.evaluation import denoising_score
from hf_nft.diffusion.training import save_pipeline
from hf_nft.diffusion_quickstart import DIFFUSION_ADVERSARY_POOL, pretrain_ddpm
from hf_nft.quickstart import ORIGINAL_DOMAIN, RESTRICTED_DOMAIN
from hf_nft.trainer import NFTTrainer


@dataclass
class ScriptArguments:
    """What to protect."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "A local DDPMPipeline folder."})
    pretrain_steps: int = field(default=1000, metadata={"help": "Pre-training steps when no model is given."})


def main() -> None:
    script_args, args = HfArgumentParser((ScriptArguments, NFTConfig)).parse_args_into_dataclasses()
    defaults = NFTConfig(output_dir=args.output_dir)
    args.nft_method, args.remove_unused_columns, args.guard_every = "sophon_diffusion", False, 0
    if args.adversary_pool == defaults.adversary_pool:
        args.adversary_pool = list(DIFFUSION_ADVERSARY_POOL)
    original_train, restricted_train = load_domain(ORIGINAL_DOMAIN, "train"), load_domain(RESTRICTED_DOMAIN, "train")
    if script_args.model_name_or_path:
        pipeline = DDPMPipeline.from_pretrained(script_args.model_name_or_path)
        unet, scheduler = pipeline.unet, pipeline.scheduler
        args.diffusion_train_timesteps = scheduler.config.num_train_timesteps
        args.diffusion_beta_schedule = scheduler.config.beta_schedule
    else:
        unet, _ = pretrain_ddpm(Path(args.output_dir), original_train, script_args.pretrain_steps, seed=args.seed,
                                progress=not args.disable_tqdm)
    trainer = NFTTrainer(model=unet, args=args, train_dataset=original_train, restricted_dataset=restricted_train)
    trainer.train()
    if trainer.is_world_process_zero():
        protected = trainer.accelerator.unwrap_model(trainer.model)
        save_pipeline(protected, trainer.method.scheduler, args.output_dir)
        for domain in (ORIGINAL_DOMAIN, RESTRICTED_DOMAIN):
            mse = denoising_score(protected, load_domain(domain, "test"), args.diffusion_train_timesteps,
                                  args.diffusion_beta_schedule)
            print(f"{domain}: denoising MSE {mse:.4f} (fixed timesteps and noise)")


if __name__ == "__main__":
    main()
