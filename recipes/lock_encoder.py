"""Lock an image classifier's encoder against probing with EncoderLock (the EncoderLock quickstart's locking
step) as a standalone script, then probe it on both domains.

    python recipes/lock_encoder.py --output_dir runs/encoderlock-recipe --encoderlock_setting supervised \
        --learning_rate 1e-2 --max_steps 400 --encoderlock_weights_per_round 500 --max_grad_norm 0
    python recipes/lock_encoder.py --output_dir runs/encoderlock-recipe --encoderlock_setting zero-shot \
        --learning_rate 1e-2 --max_steps 400 --encoderlock_weights_per_round 500 --max_grad_norm 0 --probe false

Every ``NFTConfig`` / ``TrainingArguments`` field is a flag (``--encoderlock_round_steps 20``,
``--encoderlock_weights_per_round 500``, ...); ``--nft_method encoderlock`` is set for you. Without
``--model_name_or_path`` the script first pre-trains the quickstart's small classifier on ``mnist``. The data of
each setting comes from ``hf_nft.encoderlock_quickstart.setting_data`` (authorized ``mnist``, prohibited
``uci-digits``: labelled, unlabelled, or none). The locked model is written to ``--output_dir`` as an ordinary
model (``from_pretrained`` loads it).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from transformers import AutoModelForImageClassification, HfArgumentParser

from hf_nft.config import NFTConfig
from hf_nft.data import load_domain, num_labels
from hf_nft.encoderlock_quickstart import setting_data
from hf_nft.evaluation.probing import best_probe, probe_domain, probe_suite
from hf_nft.quickstart import ORIGINAL_DOMAIN, RESTRICTED_DOMAIN, pretrain, small_image_classifier
from hf_nft.trainer import NFTTrainer


@dataclass
class ScriptArguments:
    """What to lock, and whether to probe the result."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "A local image-classifier directory."})
    pretrain_epochs: float = field(default=8.0, metadata={"help": "Pre-training epochs when no model is given."})
    probe: bool = field(default=True, metadata={"help": "Probe the locked, unprotected and random-init encoders."})
    probe_examples_per_class: int = field(default=10, metadata={"help": "The probing attacker's labelled budget."})


def main() -> None:
    script_args, args = HfArgumentParser((ScriptArguments, NFTConfig)).parse_args_into_dataclasses()
    args.nft_method = "encoderlock"
    if script_args.model_name_or_path:
        model = AutoModelForImageClassification.from_pretrained(script_args.model_name_or_path)
    else:
        authorized_train = load_domain(ORIGINAL_DOMAIN, "train")
        model = small_image_classifier(num_labels(authorized_train), seed=args.seed)
        pretrain(model, authorized_train, args.output_dir + "/pretraining", script_args.pretrain_epochs,
                 seed=args.seed, disable_tqdm=args.disable_tqdm)
    unprotected = copy.deepcopy(model)  # the released encoder, before locking (the model is changed in place)
    train, restricted = setting_data(args.encoderlock_setting)
    trainer = NFTTrainer(model=model, args=args, train_dataset=train, restricted_dataset=restricted)
    trainer.train()
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return
    summary = dict(trainer.method.changes())
    if script_args.probe:
        suite = probe_suite(examples_per_class=script_args.probe_examples_per_class)
        locked = trainer.accelerator.unwrap_model(trainer.model)
        for domain, name in (("prohibited", RESTRICTED_DOMAIN), ("authorized", ORIGINAL_DOMAIN)):
            report = probe_domain(locked, unprotected, load_domain(name, "train"), load_domain(name, "test"), suite,
                                  progress=not args.disable_tqdm)
            print(f"{domain} domain ({name}; scratch = random-init encoder):\n{report.table()}")
            summary.update({f"{domain}_{role}": best_probe(report, role) for role in report.roles})
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
