"""Zero-shot stand-ins for the prohibited text domain, and EncoderLock's zero-shot setting on a tiny BERT."""

import re

import pytest
from transformers import DataCollatorWithPadding

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.text_data import load_text_domain, tokenize_text_dataset
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer
from hf_nft.text_standins import (
    PARTY_FOUNDATIONS,
    STATEMENT_FRAMES,
    foundation_words,
    moral_foundation_standins,
    moral_foundation_statements,
)


def test_statements_use_the_vocabulary_of_their_class_only():
    words = foundation_words()
    assert {"care", "fairness", "loyalty", "authority", "sanctity"} <= set(words)
    statements = moral_foundation_statements(40, seed=3)
    assert statements[:]["labels"].count(0) == statements[:]["labels"].count(1) == 20
    classes = list(PARTY_FOUNDATIONS)
    frames = [re.escape(frame).replace(r"\{0\}", "(.+)").replace(r"\{1\}", "(.+)") for frame in STATEMENT_FRAMES]
    for row in statements:
        own = {w for f in PARTY_FOUNDATIONS[classes[row["labels"]]] for w in words[f]}
        other = {w for f in PARTY_FOUNDATIONS[classes[1 - row["labels"]]] for w in words[f]} - own
        used = next(match.groups() for match in (re.fullmatch(f, row["text"]) for f in frames) if match)
        assert all(w in own and w not in other for w in used), (row, used)
    assert moral_foundation_statements(40, seed=3)[:]["text"] == statements[:]["text"]  # deterministic
    with pytest.raises(ValueError, match="count must be positive"):
        moral_foundation_statements(0)


def test_zero_shot_text_lock_uses_standins_and_no_prohibited_text(tmp_path):
    authorized = load_text_domain("movie-reviews", "train", task="sentiment").select(range(64))
    tokenizer = word_tokenizer(authorized[:]["text"] + moral_foundation_statements(200)[:]["text"], vocab_size=800)
    train = tokenize_text_dataset(authorized, tokenizer)
    with pytest.raises(ValueError, match="needs the tokenizer"):
        moral_foundation_standins(train, None)
    args = NFTConfig(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=16, report_to=[],
                     save_strategy="no", disable_tqdm=True, use_cpu=True, nft_method="encoderlock",
                     encoderlock_setting="zero-shot", encoderlock_zero_shot_transform="moral-foundations",
                     learning_rate=0.02, max_grad_norm=0.0, guard_every=0, encoderlock_round_steps=3,
                     encoderlock_weights_per_round=20, encoderlock_probe_steps=20, encoderlock_score_examples=16)
    trainer = NFTTrainer(model=tiny_bert_classifier(len(tokenizer), 2), args=args, train_dataset=train,
                         data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.train()
    pool = trainer.method._prohibited
    assert len(pool["labels"]) == len(train) and pool["classes"] == 2
    decoded = tokenizer.decode(pool["dataset"][0]["input_ids"], skip_special_tokens=True)
    assert "".join(decoded.split()) in {"".join(t.lower().split()) for t in moral_foundation_statements(64)[:]["text"]}
    assert trainer.method.changes()["weights_changed"] > 0
