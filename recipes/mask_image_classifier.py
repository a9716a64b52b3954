"""Mask-prune an image classifier with MAP (the MAP quickstart's masking step) as a standalone script.

    python recipes/mask_image_classifier.py --output_dir runs/map-recipe --map_setting source-available \
        --learning_rate 3e-3 --max_steps 500
    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/mask_image_classifier.py \
        --output_dir runs/map-recipe --map_setting data-free --learning_rate 3e-3 --max_steps 500 \
        --mask_max_sparsity 0.05

Every ``NFTConfig`` / ``TrainingArguments`` field is a flag (``--mask_max_sparsity 0.3``, ``--max_steps 800``,
...; the Trainer's default learning rate is far too small for mask scores); ``--nft_method map`` is set for you. Without ``--model_name_or_path`` the script first pre-trains the
quickstart's small classifier on the original domain. The masked model (plain safetensors) and
``mask.safetensors`` are written to ``--output_dir``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from transformers import AutoModelForImageClassification, HfArgumentParser

from hf_nft.config import NFTConfig
from hf_nft.data import load_domain, num_labels
from hf_nft.evaluation.transfer import measure_transfer, transfer_table
from hf_nft.map_quickstart import mask_model, setting_data
from hf_nft.quickstart import ORIGINAL_DOMAIN, RESTRICTED_DOMAIN, pretrain, small_image_classifier


@dataclass
class ScriptArguments:
    """What to mask. The quickstart's domains: ``setting_data`` knows how each setting gets its data."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "A local image-classifier directory."})
    pretrain_epochs: float = field(default=8.0, metadata={"help": "Pre-training epochs when no model is given."})


def main() -> None:
    script_args, args = HfArgumentParser((ScriptArguments, NFTConfig)).parse_args_into_dataclasses()
    args.nft_method = "map"
    if script_args.model_name_or_path:
        model = AutoModelForImageClassification.from_pretrained(script_args.model_name_or_path)
    else:
        original_train = load_domain(ORIGINAL_DOMAIN, "train")
        model = small_image_classifier(num_labels(original_train), seed=args.seed)
        pretrain(model, original_train, args.output_dir + "/pretraining", script_args.pretrain_epochs,
                 seed=args.seed, disable_tqdm=args.disable_tqdm)
    unmasked = copy.deepcopy(model)  # the "before" of the measurement (the masked model is changed in place)
    train, restricted = setting_data(args.map_setting, unmasked, seed=args.seed)
    trainer = mask_model(model, args, train, restricted)
    trainer.save_model()
    if trainer.is_world_process_zero():
        result = measure_transfer(unmasked, trainer.accelerator.unwrap_model(trainer.model),
                                  load_domain(ORIGINAL_DOMAIN, "test"), load_domain(RESTRICTED_DOMAIN, "test"))
        print(transfer_table({args.map_setting: result}))


if __name__ == "__main__":
    main()
