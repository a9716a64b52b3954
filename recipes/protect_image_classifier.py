"""Protect an image classifier with SOPHON (the quickstart's protection step) as a standalone script.

    python recipes/protect_image_classifier.py --output_dir runs/recipe --max_steps 400
    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/protect_image_classifier.py \
        --output_dir runs/recipe --max_steps 400

Every ``NFTConfig`` / ``TrainingArguments`` field is a flag (``--nft_loss inverse_ce``, ``--inner_steps 16``, ...).
Without ``--model_name_or_path`` the script first pre-trains the quickstart's small classifier on the original
domain; with it, it loads any ``AutoModelForImageClassification`` directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoModelForImageClassification, HfArgumentParser

from hf_nft.config import NFTConfig
from hf_nft.data import load_domain, load_renderings, num_labels
from hf_nft.quickstart import (
    ORIGINAL_DOMAIN,
    RESTRICTED_DOMAIN,
    RESTRICTED_RENDERINGS,
    pretrain,
    protect,
    small_image_classifier,
)


@dataclass
class ScriptArguments:
    """What to protect, and against what."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "A local image-classifier directory."})
    original_domain: str = field(default=ORIGINAL_DOMAIN, metadata={"help": "Domain to keep (hf_nft.data)."})
    restricted_domain: str = field(default=RESTRICTED_DOMAIN, metadata={"help": "Domain to block (hf_nft.data)."})
    restricted_renderings: list[str] = field(
        default_factory=lambda: list(RESTRICTED_RENDERINGS),
        metadata={"help": "Resampling modes the restricted training images are rendered with (hf_nft.data)."},
    )
    pretrain_epochs: float = field(default=8.0, metadata={"help": "Pre-training epochs when no model is given."})


def main() -> None:
    script_args, nft_args = HfArgumentParser((ScriptArguments, NFTConfig)).parse_args_into_dataclasses()
    original_train = load_domain(script_args.original_domain, "train")
    original_test = load_domain(script_args.original_domain, "test")
    if script_args.model_name_or_path:
        model = AutoModelForImageClassification.from_pretrained(script_args.model_name_or_path)
    else:
        model = small_image_classifier(num_labels(original_train), seed=nft_args.seed)
        pretrain(model, original_train, nft_args.output_dir + "/pretraining", script_args.pretrain_epochs,
                 seed=nft_args.seed, disable_tqdm=nft_args.disable_tqdm)
    trainer = protect(model, nft_args, original_train, original_test,
                      load_renderings(script_args.restricted_domain, "train",
                                      tuple(script_args.restricted_renderings)),
                      load_domain(script_args.restricted_domain, "test"))
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_model()


if __name__ == "__main__":
    main()
