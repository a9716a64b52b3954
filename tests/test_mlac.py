"""MLAC's pieces on a tiny BERT: the readout term, the harmful head, the meta-learned adversary, both orders."""

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel
from transformers import DataCollatorWithPadding

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.data import load_text_domain, tokenize_text_dataset
from hf_nft.methods._simulation import AdversaryStrategy, FineTuningSimulation
from hf_nft.methods.mlac import HarmfulReadout, best_linear_readout_loss
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer


@pytest.fixture(scope="module")
def text_data():
    desired = load_text_domain("text-genres", "train").shuffle(seed=0).select(range(96))
    harmful = load_text_domain("movie-reviews", "train").shuffle(seed=0).select(range(96))
    tokenizer = word_tokenizer(desired[:]["text"] + harmful[:]["text"], vocab_size=400)
    return tokenizer, tokenize_text_dataset(desired, tokenizer, 20), tokenize_text_dataset(harmful, tokenizer, 20)


def test_best_linear_readout_separates_informative_features_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    informative = torch.randn(64, 8, generator=generator) + 3.0 * labels[:, None]
    noise = torch.randn(64, 8, generator=generator)
    good, bad = best_linear_readout_loss(informative, labels, 2), best_linear_readout_loss(noise, labels, 2)
    assert good < 0.6 < bad
    features = informative.clone().requires_grad_(True)
    best_linear_readout_loss(features, labels, 2).backward()
    assert features.grad.abs().sum() > 0  # differentiable through the closed-form readout


def test_harmful_readout_shares_the_encoder_and_has_its_own_head(text_data):
    tokenizer, _, _ = text_data
    model = tiny_bert_classifier(len(tokenizer), num_labels=4)
    readout = HarmfulReadout(model, labels=2)
    assert readout.encoder.embeddings.word_embeddings.weight is model.bert.embeddings.word_embeddings.weight
    assert readout.head.out_features == 2 and readout.config.num_labels == 2


def _batches(harmful, collator, size=16):
    rows = [harmful[i] for i in range(len(harmful))]
    while True:
        for start in range(0, len(rows) - size + 1, size):
            yield collator(rows[start:start + size])


def _ce(forward, batch):
    return F.cross_entropy(forward(batch).logits, batch["labels"])


def test_log_lr_sensitivity_matches_a_finite_difference_for_one_sgd_step(text_data):
    tokenizer, _, harmful = text_data
    collator = DataCollatorWithPadding(tokenizer)
    readout = HarmfulReadout(tiny_bert_classifier(len(tokenizer), 4), labels=2).eval()
    for module in readout.modules():  # no dropout: the finite difference must see one deterministic function
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    simulation = FineTuningSimulation(readout, _ce, _ce)

    def total(lr):
        result = simulation.run(AdversaryStrategy("sgd", lr, 8, False), _batches(harmful, collator), 1, 8)
        return sum(result.suppression_losses), result.log_lr_sensitivity

    lr, eps = 0.5, 1e-3
    _, sensitivity = total(lr)
    numeric = (total(lr * math.exp(eps))[0] - total(lr * math.exp(-eps))[0]) / (2 * eps)
    assert sensitivity == pytest.approx(numeric, rel=0.05, abs=1e-4)


def test_differentiable_run_reaches_the_encoder_the_rate_and_the_start_values(text_data):
    tokenizer, _, harmful = text_data
    readout = HarmfulReadout(tiny_bert_classifier(len(tokenizer), 4), labels=2)
    lr = torch.tensor(0.1, requires_grad=True)
    head = {f"head.{n}": p.detach().clone().requires_grad_(True) for n, p in readout.head.named_parameters()}
    terms = FineTuningSimulation(readout, _ce, _ce).run_differentiable(
        lr, _batches(harmful, DataCollatorWithPadding(tokenizer)), steps=2, batch_size=8, query_size=8, start=head)
    assert len(terms) == 3
    torch.stack(terms).mean().backward()
    assert lr.grad is not None and head["head.weight"].grad.abs().sum() > 0
    assert readout.encoder.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def _trainer(text_data, **overrides):
    tokenizer, desired, harmful = text_data
    args = NFTConfig(output_dir="/tmp/hf_nft_test_mlac", nft_method="mlac", max_steps=3, per_device_train_batch_size=8,
                     inner_steps=2, adversary_batch_sizes=[8], query_batch_size=8, report_to=[], use_cpu=True,
                     save_strategy="no", guard_every=0, logging_steps=1, mlac_meta_lr=0.05, **overrides)
    model = tiny_bert_classifier(len(tokenizer), num_labels=4)
    return NFTTrainer(model=model, args=args, train_dataset=desired, restricted_dataset=harmful,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)


@pytest.mark.parametrize("second_order", [False, True])
def test_mlac_trains_the_encoder_and_meta_learns_the_adversary(text_data, second_order):
    trainer = _trainer(text_data, mlac_second_order=second_order)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    method = trainer.method
    assert method.adversary_learning_rate() != pytest.approx(1e-3, rel=1e-6)  # the rate was meta-learned
    head_state = method._meta_optimizer.state[method._head_init["weight"]]
    assert int(head_state["step"]) == 3 and head_state["exp_avg"].abs().sum() > 0  # the head init was meta-learned
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any(n.startswith("bert.encoder") for n in moved)
    logs = [entry for entry in trainer.state.log_history if "harmful_ce_mean" in entry]
    assert logs and all(0 <= entry["harmful_ce_mean"] <= math.log(2) + 1e-5 for entry in logs)
    assert "linear_readout_ce" in logs[0] and "desired_loss" in logs[0]
    expected = "second-order" if second_order else "first-order (FOMAML approximation)"
    assert method.settings()["meta_gradient"] == expected


def test_head_only_adversary_leaves_the_encoder_unadapted_in_the_simulation(text_data):
    tokenizer, _, harmful = text_data
    readout = HarmfulReadout(tiny_bert_classifier(len(tokenizer), 4), labels=2)
    frozen = {n for n, _ in readout.named_parameters() if not n.startswith("head.")}
    result = FineTuningSimulation(readout, _ce, _ce).run(
        AdversaryStrategy("adam", 0.01, 8, False), _batches(harmful, DataCollatorWithPadding(tokenizer)), 2, 8,
        frozen=frozen)
    params = dict(readout.named_parameters())
    assert all(torch.equal(result.adapted_parameters[n], params[n].detach()) for n in frozen)
    assert not torch.equal(result.adapted_parameters["head.weight"], params["head.weight"].detach())
    assert any(result.meta_gradients[n].abs().sum() > 0 for n in frozen)  # meta-gradients still reach them


def test_bad_mlac_settings_are_named():
    with pytest.raises(ValueError, match="Unknown optimizer"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_adversary_optimizer="adamm")
    with pytest.raises(ValueError, match="mlac_meta_lr must be positive"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_meta_lr=0)
    with pytest.raises(ValueError, match="mlac_harmful_labels must be at least 2"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_harmful_labels=1)


def test_mlac_names_missing_or_mismatched_harmful_data(text_data):
    with pytest.raises(ValueError, match="harmful-task restricted_dataset"):
        tokenizer, desired, _ = text_data
        NFTTrainer(model=tiny_bert_classifier(len(tokenizer), 4),
                   args=NFTConfig(output_dir="/tmp/x", nft_method="mlac", report_to=[], use_cpu=True),
                   train_dataset=desired, restricted_dataset=None)
    with pytest.raises(ValueError, match="3 classes but the model's head has 2"):
        tokenizer, desired, harmful = text_data
        NFTTrainer(model=tiny_bert_classifier(len(tokenizer), 4),
                   args=NFTConfig(output_dir="/tmp/x", nft_method="mlac", report_to=[], use_cpu=True,
                                  mlac_harmful_labels=2),
                   train_dataset=desired, restricted_dataset=harmful.cast_column(
                       "labels", ClassLabel(names=["a", "b", "c"])))
