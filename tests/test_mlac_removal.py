"""Removing a harmful task from a text encoder before MLAC blocks it: erasing its directions from the word
embeddings and pruning the feed-forward units that track it; their effect on held-out texts, their errors, and
MLAC keeping both removed while it trains."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.data import load_text_domain, per_class_subset, tokenize_text_dataset
from hf_nft.methods.embedding_erasure import EmbeddingEraser, discriminant_directions
from hf_nft.methods.unit_pruning import FeedForwardPruner, anova_f
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer
from hf_nft.text_pooling import masked_mean


def test_discriminant_directions_point_along_the_class_means_and_span_c_minus_1():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3000) % 2
    features = torch.randn(3000, 6, generator=generator) + 1.5 * labels[:, None] * torch.eye(6)[0]
    directions = discriminant_directions(features, labels, 2)
    unit = directions[0] / directions[0].norm()
    assert unit[0].abs() > 0.99  # the mean difference lies along the first axis
    three = torch.arange(3000) % 3
    shifted = torch.randn(3000, 6, generator=generator) + 2.0 * torch.eye(6)[three]
    assert torch.linalg.matrix_rank(discriminant_directions(shifted, three, 3)) == 2


@pytest.fixture(scope="module")
def genre_encoder():
    """A tiny BERT pre-trained on text genres (a lexical task its word embeddings learn), and held-out texts."""
    torch.manual_seed(0)
    train = per_class_subset(load_text_domain("text-genres", "train"), 60)
    held_out = per_class_subset(load_text_domain("text-genres", "test"), 40)
    tokenizer = word_tokenizer(train[:]["text"], vocab_size=600)
    train_tokens, held_out_tokens = (tokenize_text_dataset(d, tokenizer, 24) for d in (train, held_out))
    model = tiny_bert_classifier(len(tokenizer), num_labels=4, hidden_size=32)
    Trainer(model=model, args=TrainingArguments(output_dir="/tmp/hf_nft_test_erasure", learning_rate=3e-3,
                                                num_train_epochs=6, report_to=[], save_strategy="no", use_cpu=True,
                                                disable_tqdm=True, per_device_train_batch_size=16),
            train_dataset=train_tokens, data_collator=DataCollatorWithPadding(tokenizer)).train()
    return model, tokenizer, train_tokens, held_out_tokens


def _batches(data, tokenizer, size=40):
    collator = DataCollatorWithPadding(tokenizer)
    return [collator([data[i] for i in range(start, min(start + size, len(data)))])
            for start in range(0, len(data), size)]


def _embedding_probe_accuracy(model, tokenizer, train, test):
    """A standardised logistic probe on the mean token of the embeddings' output, scored on held-out texts."""
    def features(data):
        rows, labels = [], []
        with torch.no_grad():
            for batch in _batches(data, tokenizer):
                states = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    output_hidden_states=True).hidden_states[0]
                rows.append(masked_mean(states, batch["attention_mask"]).numpy())
                labels.append(batch["labels"].numpy())
        return np.concatenate(rows), np.concatenate(labels)

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(*features(train))
    return probe.score(*features(test))


def test_erasure_removes_the_task_from_held_out_texts_and_only_touches_word_embeddings(genre_encoder):
    model, tokenizer, train, held_out = genre_encoder
    model = type(model)(model.config)
    model.load_state_dict(genre_encoder[0].state_dict())
    model.eval()
    before = _embedding_probe_accuracy(model, tokenizer, train, held_out)
    positions = model.bert.embeddings.position_embeddings.weight.detach().clone()
    eraser = EmbeddingEraser(model.bert)
    eraser.fit(_batches(train, tokenizer), rounds=6, classes=4)
    after = _embedding_probe_accuracy(model, tokenizer, train, held_out)
    assert before >= 0.6, before  # chance is 0.25: the embeddings carry the genre
    assert after < before - 0.2, (before, after)
    assert eraser.basis.shape == (18, 32)  # 6 rounds x (4 - 1) between-class directions
    assert torch.allclose(eraser.basis @ eraser.basis.T, torch.eye(18), atol=1e-5)
    words = model.bert.embeddings.word_embeddings.weight.detach()
    assert (words @ eraser.basis.T).abs().max() < 1e-5
    assert torch.equal(model.bert.embeddings.position_embeddings.weight.detach(), positions)


def test_erasure_names_its_problems(genre_encoder):
    model = genre_encoder[0]
    with pytest.raises(ValueError, match="needs a BERT-like encoder with embeddings.word_embeddings"):
        EmbeddingEraser(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="needs labelled harmful-task batches"):
        EmbeddingEraser(model.bert).fit([], rounds=1, classes=4)
    with pytest.raises(ValueError, match="mlac_erasure_rounds must be non-negative"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_erasure_rounds=-1)


def test_mlac_keeps_the_erased_directions_and_pruned_units_out_while_it_trains(genre_encoder):
    _, tokenizer, harmful, _ = genre_encoder
    desired = tokenize_text_dataset(load_text_domain("us-politics", "train", task="setting").select(range(48)),
                                    tokenizer, 24)
    args = NFTConfig(output_dir="/tmp/hf_nft_test_erasure", nft_method="mlac", max_steps=3, learning_rate=1e-2,
                     per_device_train_batch_size=8, inner_steps=1, adversary_batch_sizes=[8], query_batch_size=8,
                     report_to=[], use_cpu=True, save_strategy="no", guard_every=0, mlac_erasure_rounds=1,
                     mlac_prune_fraction=0.25, mlac_prune_layers=[1], mlac_distill_weight=1.0)
    model = tiny_bert_classifier(len(tokenizer), num_labels=2, hidden_size=32)
    start = model.bert.embeddings.word_embeddings.weight.detach().clone()
    trainer = NFTTrainer(model=model, args=args, train_dataset=desired, restricted_dataset=harmful,
                         data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.train()
    basis = trainer.method.eraser.basis
    words = model.bert.embeddings.word_embeddings.weight.detach()
    assert basis.shape == (3, 32) and not torch.allclose(words, start)
    assert (words @ basis.T).abs().max() < 1e-5  # AdamW's steps did not bring them back
    teacher_words = trainer.method._teacher.bert.embeddings.word_embeddings.weight
    assert torch.equal(teacher_words, start)  # the distillation teacher is the model before the erasure
    units = trainer.method.pruner.pruned[1]
    layer = model.bert.encoder.layer[1]
    assert list(trainer.method.pruner.pruned) == [1] and len(units) == 16
    assert layer.intermediate.dense.weight[units].abs().sum() == 0 and layer.output.dense.weight[:, units].abs().sum() == 0
    settings = trainer.method.settings()
    assert settings["mlac_erasure_rounds"] == 1 and settings["mlac_prune_layers"] == [1]


def test_anova_f_is_large_for_a_unit_that_tracks_the_labels_and_about_one_for_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4000) % 2
    units = torch.randn(4000, 3, generator=generator)
    units[:, 0] += labels
    scores = anova_f(units, labels, 2)
    assert scores[0] > 500 and 0.0 < scores[1] < 5 and 0.0 < scores[2] < 5


def _genre_copy(genre_encoder):
    model = type(genre_encoder[0])(genre_encoder[0].config)
    model.load_state_dict(genre_encoder[0].state_dict())
    return model


def test_pruning_zeroes_the_units_that_track_the_task_and_fine_tuning_cannot_regrow_them(genre_encoder):
    _, tokenizer, train, _ = genre_encoder
    model = _genre_copy(genre_encoder)
    pruner = FeedForwardPruner(model.bert, layers=[0, 1], fraction=0.25)
    pruner.fit(_batches(train, tokenizer), classes=4)
    for index, units in pruner.pruned.items():
        layer = model.bert.encoder.layer[index]
        assert len(units) == 16  # a quarter of the 64 intermediate units
        assert layer.intermediate.dense.weight[units].abs().sum() == 0 and layer.intermediate.dense.bias[units].abs().sum() == 0
        assert layer.output.dense.weight[:, units].abs().sum() == 0
    model.train()
    batch = _batches(train, tokenizer)[0]
    model(**batch).loss.backward()  # an attacker's fine-tuning step: no gradient reaches a pruned unit
    for index, units in pruner.pruned.items():
        layer = model.bert.encoder.layer[index]
        assert layer.intermediate.dense.weight.grad[units].abs().sum() == 0
        assert layer.output.dense.weight.grad[:, units].abs().sum() == 0
        assert layer.output.dense.weight.grad.abs().sum() > 0


def test_pruning_names_its_problems(genre_encoder):
    model = genre_encoder[0]
    with pytest.raises(ValueError, match=r"pruned fraction must be in \(0, 1\)"):
        FeedForwardPruner(model.bert, [0], 1.0)
    with pytest.raises(ValueError, match=r"Feed-forward layers \[2\] do not exist: the encoder has layers 0..1"):
        FeedForwardPruner(model.bert, [0, 2], 0.1)
    with pytest.raises(ValueError, match="needs a BERT-like encoder"):
        FeedForwardPruner(torch.nn.Linear(3, 3), [0], 0.1)
    with pytest.raises(ValueError, match="needs labelled harmful-task batches"):
        FeedForwardPruner(model.bert, [0], 0.1).fit([], classes=4)
    with pytest.raises(ValueError, match=r"mlac_prune_fraction must be in \[0, 1\)"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_prune_fraction=1.0)
