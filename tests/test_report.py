"""evaluate_protection and ProtectionReport: roles, spreads, headline, overhead, JSON, plot, bad input."""

from __future__ import annotations

import pytest
import torch
from datasets import ClassLabel
from test_attacks import digits, snapshot, text_dataset, tiny_bert, tiny_resnet  # noqa: F401 (fixture)

from hf_nft.attacks.runner import run_attack
from hf_nft.attacks.spec import AttackSpec
from hf_nft.attacks.suite import Suite
from hf_nft.data import load_domain, per_class_subset
from hf_nft.evaluation.overhead import describe_overhead, fine_tuning_overhead, steps_to_reach
from hf_nft.evaluation.report import ProtectionReport, evaluate_protection

torch.set_num_threads(1)


def small_suite(steps: int = 10) -> Suite:
    common = {"steps": steps, "eval_every": 5, "examples_per_class": 4, "batch_size": 8}
    return Suite(name="small", seeds=[0, 1], attacks=[
        AttackSpec(kind="full_finetune", learning_rate=3e-3, **common),
        AttackSpec(kind="linear_probe", learning_rate=1e-2, reset_head=True, **common),
    ])


@pytest.fixture(scope="module")
def trained_on_digits(digits):  # noqa: F811
    """A model trained on the restricted domain itself: the "unprotected" reference, which should be easy prey."""
    spec = AttackSpec(kind="full_finetune", steps=80, eval_every=80, learning_rate=3e-3, batch_size=32)
    run = run_attack(tiny_resnet(seed=5), spec, *digits, return_model=True)
    assert run.final > 0.6
    return run.model


@pytest.fixture(scope="module")
def report(digits, trained_on_digits):  # noqa: F811
    protected = tiny_resnet(seed=1)
    before = snapshot(protected)
    original = per_class_subset(load_domain("mnist", "test"), 10)
    result = evaluate_protection(protected, *digits, suite=small_suite(), reference=trained_on_digits,
                                 original_eval=original, progress=False)
    assert all(torch.equal(before[n], v) for n, v in protected.state_dict().items())
    return result


def test_results_per_attack_and_role(report):
    assert list(report.results) == ["full_finetune/adam/lr=0.003", "linear_probe/reset/adam/lr=0.01"]
    for outcomes in report.results.values():
        assert set(outcomes) == {"protected", "unprotected", "scratch"}
        for outcome in outcomes.values():
            assert outcome.steps == [0, 5, 10] and outcome.seeds == [0, 1]
            assert len(outcome.values) == 2 and outcome.final_mean == pytest.approx(sum(outcome.finals) / 2)
            assert outcome.final_std == pytest.approx(torch.tensor(outcome.finals).std().item())
    assert set(report.original) == set(report.before) == {"protected", "unprotected", "scratch"}
    assert report.before["unprotected"] > 0.6 > report.before["protected"]


def test_the_reference_trained_on_the_restricted_domain_beats_scratch(report):
    for outcomes in report.results.values():
        assert outcomes["unprotected"].final_mean > outcomes["scratch"].final_mean + 0.2


def test_headline_is_the_strongest_attack_on_the_protected_model(report):
    best = max(report.results, key=lambda name: report.results[name]["protected"].final_mean)
    headline = report.headline
    assert headline["attack"] == best
    assert headline["protected"]["mean"] == report.results[best]["protected"].final_mean
    assert headline["overhead"] == report.overhead[best]


def test_overhead_counts_steps_to_the_target(report):
    for name, overhead in report.overhead.items():
        outcomes = report.results[name]
        assert overhead["target"] == pytest.approx(0.9 * outcomes["scratch"].final_mean)
        assert overhead["steps"]["scratch"] is not None  # scratch reaches 90% of its own final value
        if not outcomes["unprotected"].spec["reset_head"]:  # trained on the domain: there before any attack
            assert overhead["steps"]["unprotected"] == 0
        for role, steps in overhead["steps"].items():
            mean = outcomes[role].mean_curve
            reached = [s for s, v in zip(outcomes[role].steps, mean) if v >= overhead["target"]]
            assert steps == (reached[0] if reached else None)


def test_overhead_arithmetic():
    assert steps_to_reach([0, 5, 10], [0.1, 0.5, 0.9], 0.5, True) == 5
    assert steps_to_reach([0, 5, 10], [0.1, 0.2, 0.3], 0.5, True) is None
    assert steps_to_reach([0, 5, 10], [2.0, 1.0, 0.5], 0.9, False) == 10
    curves = {"protected": ([0, 5, 10], [0.1, 0.1, 0.2]), "scratch": ([0, 5, 10], [0.1, 0.6, 0.8])}
    never = fine_tuning_overhead(curves, 0.5, True)
    assert never["steps"] == {"protected": None, "scratch": 5} and never["ratio"] is None
    assert describe_overhead(never) == "never within 10 steps (scratch: 5)"
    curves["protected"] = ([0, 5, 10], [0.1, 0.2, 0.7])
    slower = fine_tuning_overhead(curves, 0.5, True)
    assert slower["ratio"] == 2.0 and describe_overhead(slower) == "10 vs 5 steps (2.0x)"


def test_json_round_trip_table_and_plot(report, tmp_path):
    report.to_json(tmp_path / "report.json")
    loaded = ProtectionReport.from_json(tmp_path / "report.json")
    assert loaded.to_dict() == report.to_dict() and loaded.headline == report.headline
    with pytest.warns(UserWarning, match="unknown protection report keys"):
        assert ProtectionReport.from_dict({**report.to_dict(), "from_the_future": 1}).to_dict() == report.to_dict()
    table = report.table()
    lines = table.splitlines()
    assert any(line.startswith(" original domain") for line in lines)
    assert any(line.startswith("*" + report.headline["attack"]) for line in lines)
    assert "±" in table and "unprotected" in lines[1]
    report.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "report.json"]  # no temporary files left


def test_lower_is_better_metric_picks_the_lowest_loss(digits):  # noqa: F811
    result = evaluate_protection(tiny_resnet(), *digits, suite=small_suite(steps=5), scratch=False,
                                 metric="cross_entropy", seeds=[0], progress=False)
    assert result.metric == "cross_entropy" and not result.higher_is_better
    lowest = min(result.results, key=lambda name: result.results[name]["protected"].final_mean)
    assert result.headline["attack"] == lowest and result.overhead == {}


def test_text_classifier_with_a_collator():
    from tokenizers import Tokenizer, models
    from transformers import DataCollatorWithPadding, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[PAD]": 0}, unk_token="[PAD]")),
                                        pad_token="[PAD]")
    ragged = text_dataset(48, seed=1).map(lambda row, i: {"input_ids": row["input_ids"][: 6 + i % 6],
                                                          "attention_mask": row["attention_mask"][: 6 + i % 6]},
                                          with_indices=True)
    suite = [AttackSpec(kind=kind, steps=4, eval_every=2, examples_per_class=8) for kind in ("lora", "mlp_probe")]
    result = evaluate_protection(tiny_bert(), ragged, ragged, suite=suite, reference=tiny_bert(seed=1),
                                 collate_fn=DataCollatorWithPadding(tokenizer), progress=False)
    assert set(result.results["lora/adam/lr=0.001"]) == {"protected", "unprotected", "scratch"}
    assert result.results["mlp_probe/adam/lr=0.001"]["scratch"].steps == [0, 2, 4]


def test_bad_input_fails_before_any_attack(digits):  # noqa: F811
    with pytest.raises(ValueError, match="Did you mean 'accuracy'"):
        evaluate_protection(tiny_resnet(), *digits, suite="quick", metric="acuracy", progress=False)
    with pytest.raises(ValueError, match="seeds must be a non-empty list"):
        evaluate_protection(tiny_resnet(), *digits, suite="quick", seeds=[], progress=False)
    four_way = per_class_subset(load_domain("mnist", "test"), 2).filter(lambda row: row["labels"] < 4)
    four_way = four_way.cast_column("labels", ClassLabel(num_classes=4))
    with pytest.raises(ValueError, match="original domain has 4 classes"):
        evaluate_protection(tiny_resnet(), *digits, suite="quick", original_eval=four_way, progress=False)
    with pytest.raises(ValueError, match="has 10 classes but the model's classification head has 2"):
        evaluate_protection(tiny_bert(), *digits, suite="quick", progress=False)
