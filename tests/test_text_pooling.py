"""The mean-pooling BERT classifier: what its head reads, padding, and reloading through the Auto classes."""

import torch
from transformers import AutoModelForSequenceClassification

from hf_nft.attacks.models import load_classifier
from hf_nft.attacks.probes import head_features
from hf_nft.text_models import tiny_bert_classifier
from hf_nft.text_pooling import BertForMeanPooledSequenceClassification, masked_mean

PADDED = {"input_ids": torch.tensor([[2, 7, 8, 3, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]])}
UNPADDED = {"input_ids": torch.tensor([[2, 7, 8, 3]]), "attention_mask": torch.tensor([[1, 1, 1, 1]])}


def test_masked_mean_ignores_masked_tokens():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.equal(masked_mean(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(masked_mean(hidden, None), hidden.mean(1))


def test_head_reads_the_mean_token_and_padding_changes_nothing():
    model = tiny_bert_classifier(50, 3, mean_pooling=True).eval()
    assert model.bert.pooler is None
    with torch.no_grad():
        padded, unpadded = model(**PADDED).logits, model(**UNPADDED).logits
        states = model.bert(**PADDED).last_hidden_state
    assert torch.allclose(padded, unpadded, atol=1e-6)
    features = head_features(model, [{**PADDED, "labels": torch.tensor([0])}], torch.device("cpu"))[0]["features"]
    assert torch.allclose(features, masked_mean(states, PADDED["attention_mask"]), atol=1e-6)


def test_loss_is_the_cross_entropy_of_the_labels():
    model = tiny_bert_classifier(50, 3, mean_pooling=True).eval()
    out = model(**PADDED, labels=torch.tensor([2]))
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([2])))


def test_saved_model_reloads_through_the_auto_class_and_the_harness(tmp_path):
    model = tiny_bert_classifier(50, 3, mean_pooling=True).eval()
    model.save_pretrained(tmp_path)
    for loaded in (AutoModelForSequenceClassification.from_pretrained(tmp_path), load_classifier(tmp_path)):
        assert isinstance(loaded, BertForMeanPooledSequenceClassification)
        with torch.no_grad():
            assert torch.allclose(loaded.eval()(**PADDED).logits, model(**PADDED).logits, atol=1e-6)
