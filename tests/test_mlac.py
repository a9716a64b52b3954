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
from hf_nft.methods.mlac import HarmfulReadout, fisher_separability
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer


@pytest.fixture(scope="module")
def text_data():
    desired = load_text_domain("text-genres", "train").shuffle(seed=0).select(range(96))
    harmful = load_text_domain("movie-reviews", "train").shuffle(seed=0).select(range(96))
    tokenizer = word_tokenizer(desired[:]["text"] + harmful[:]["text"], vocab_size=400)
    return tokenizer, tokenize_text_dataset(desired, tokenizer, 20), tokenize_text_dataset(harmful, tokenizer, 20)


def test_fisher_separability_is_the_mahalanobis_distance_and_ignores_scale():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4000) % 2
    informative = torch.randn(4000, 4, generator=generator) + 2.0 * labels[:, None] * torch.tensor([1.0, 0, 0, 0])
    noise = torch.randn(4000, 4, generator=generator)
    separated = fisher_separability(informative, labels, 2)
    # Means 2 apart along one unit-variance axis: J = p(1-p) * distance^2 = 1, divided by 1.1 by the ridge.
    assert 0.85 < separated < 0.97
    assert fisher_separability(noise, labels, 2) < 0.01
    assert torch.isclose(fisher_separability(informative * 1e-3, labels, 2), separated, rtol=1e-3)
    features = noise.clone().requires_grad_(True)
    fisher_separability(features, labels, 2).backward()
    assert features.grad.abs().sum() > 0  # a gradient even where the labels are unreadable
    with pytest.raises(ValueError, match="at least 4 rows"):
        fisher_separability(noise[:3], labels[:3], 2)


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
    assert logs[0]["readout_separability"] > 0 and "desired_loss" in logs[0]
    assert method.settings()["mlac_readout_layers"] == [1, 2]  # every transformer layer of the tiny BERT
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
    with pytest.raises(ValueError, match="mlac_distill_weight must be non-negative"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_distill_weight=-1)


def test_readout_layers_must_exist_in_the_encoder(text_data):
    tokenizer, desired, harmful = text_data
    with pytest.raises(ValueError, match=r"mlac_readout_layers \[3\] do not exist: the encoder has hidden states 0..2"):
        NFTTrainer(model=tiny_bert_classifier(len(tokenizer), 4),
                   args=NFTConfig(output_dir="/tmp/x", nft_method="mlac", report_to=[], use_cpu=True,
                                  mlac_readout_layers=[0, 3]),
                   train_dataset=desired, restricted_dataset=harmful)


def test_distillation_keeps_the_desired_predictions_of_the_start_model(text_data):
    trainer = _trainer(text_data, mlac_distill_weight=1.0, mlac_readout_layers=[0, 2])
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    teacher = trainer.method._teacher
    assert all(torch.equal(p, start[n]) for n, p in teacher.named_parameters())  # a frozen copy of the start
    assert not any(p.requires_grad for p in teacher.parameters())
    assert trainer.method.settings()["mlac_readout_layers"] == [0, 2]


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


def test_readout_term_pools_mlac_readout_batches(text_data):
    tokenizer, _, harmful = text_data
    trainer = _trainer(text_data, mlac_readout_batches=3, mlac_readout_layers=[2])
    readout = trainer.method._setup(trainer.model)
    collate = DataCollatorWithPadding(tokenizer)
    batches = [collate([harmful[i] for i in range(start, start + 8)]) for start in (0, 8, 16, 24)]
    trainer.method._batches = iter(batches)
    term, separability = trainer.method._readout_term(readout)
    readout.eval()
    with torch.no_grad():  # the three batches' mean tokens, measured together; the fourth is left for later
        features = torch.cat([readout.layer_means([2], **{k: v for k, v in batch.items() if k != "labels"})[0]
                              for batch in batches[:3]])
    expected = fisher_separability(features, torch.cat([batch["labels"] for batch in batches[:3]]), 2)
    assert separability == pytest.approx(float(expected), rel=1e-4)
    assert float(term) == pytest.approx(math.log1p(float(expected)), rel=1e-4)
    assert next(trainer.method._batches) is batches[3]
    with pytest.raises(ValueError, match="mlac_readout_batches must be at least 1"):
        NFTConfig(output_dir="/tmp/x", nft_method="mlac", mlac_readout_batches=0)
