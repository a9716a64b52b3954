"""The text quickstart's bookkeeping: draws averaged before the strongest attack is taken, the checks on the means,
the table, the curve and the ``--draws`` option."""

from types import SimpleNamespace

import pytest
import torch

from hf_nft import text_quickstart
from hf_nft.cli import main
from hf_nft.text_quickstart import TextQuickstartSettings, _checks, _strongest, mean_accuracies, result_table


def rows_of(table: dict[tuple[str, int, str], list[float]]) -> list[dict]:
    return [{"encoder": encoder, "budget": budget, "attack": attack, "draw": draw, "accuracy": accuracy, "chosen": {}}
            for (encoder, budget, attack), values in table.items() for draw, accuracy in enumerate(values)]


ROWS = rows_of({
    ("unprotected", 20, "probe"): [0.70, 0.66], ("unprotected", 20, "lora"): [0.60, 0.62],
    ("blocked", 20, "probe"): [0.50, 0.54], ("blocked", 20, "lora"): [0.62, 0.50],
    ("scratch", 20, "probe"): [0.50, 0.52], ("scratch", 20, "lora"): [0.52, 0.52],
})


def test_strongest_attack_is_the_best_of_each_draw_averaged():
    means = mean_accuracies(ROWS)
    assert means["blocked", 20, "lora"] == pytest.approx(0.56) and means["blocked", 20, "probe"] == pytest.approx(0.52)
    # Draw 0's best is LoRA (0.62), draw 1's the probe (0.54): the attacker who tries both gets 0.58 on average,
    # more than either attack's own mean.
    strongest = _strongest(ROWS)
    assert strongest["blocked"][20] == pytest.approx(0.58) and strongest["scratch"][20] == pytest.approx(0.52)
    assert strongest["unprotected"][20] == pytest.approx(0.68)
    checks = _checks({"desired_accuracy": {"unprotected": 0.95, "blocked": 0.93}, "strongest": strongest})
    assert checks == {"desired: blocked >= unprotected - 3 points": True,
                      "harmful: blocked <= scratch + 5 points at every budget (strongest attack)": False,
                      "harmful: unprotected >= scratch + 10 points at the smallest budget": True}
    lucky_scratch = ROWS + rows_of({("scratch", 20, "mlp"): [0.50, 0.56]})
    assert all(_checks({"desired_accuracy": {"unprotected": 0.95, "blocked": 0.92},
                        "strongest": _strongest(lucky_scratch)}).values())


def test_table_and_curve_show_the_means(tmp_path):
    result = {"attacks": ROWS, "desired_accuracy": {"unprotected": 0.95, "blocked": 0.94}}
    table = result_table(result)
    assert "draws of the attacker's examples (2 at 20)" in table  # what the rows ran
    assert [line.split()[-1] for line in table.splitlines()[3:]] == ["0.680", "0.580", "0.520"]
    text_quickstart.plot_budget_curve(ROWS, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_small_budgets_get_more_draws():
    assert [TextQuickstartSettings().draws_at(budget) for budget in (20, 60, 200)] == [3, 1, 1]
    assert [TextQuickstartSettings(draws=2).draws_at(budget) for budget in (20, 200)] == [2, 2]
    with pytest.raises(ValueError, match="draws must be at least 1"):
        TextQuickstartSettings(draws=0)
    with pytest.raises(ValueError, match="averaged_examples must be at least 1"):
        TextQuickstartSettings(averaged_examples=0)


def test_draws_option_reaches_the_text_quickstart_only(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(text_quickstart, "run_text_quickstart", lambda output, **kwargs: calls.update(kwargs))
    monkeypatch.setattr(text_quickstart, "print_text_result", lambda result: None)
    assert main(["quickstart", "--mode", "text", "--output", str(tmp_path), "--draws", "3"]) == 0
    assert calls["draws"] == 3
    for argv in (["--mode", "map", "--draws", "2"], ["--mode", "text", "--draws", "0"]):
        with pytest.raises(SystemExit, match="--draws takes a positive count"):
            main(["quickstart", "--output", str(tmp_path), *argv])


def test_attack_rows_run_every_attack_once_per_draw_with_its_own_seed(monkeypatch):
    runs = []

    def fake_attack(model, spec, pool, eval_data, collate_fn):
        runs.append((model, spec.examples_per_class, spec.seed, spec.eval_at_start))
        return SimpleNamespace(final=0.5 + spec.seed / 100, search={}, spec=spec)

    monkeypatch.setattr(text_quickstart, "_harmful_classifier", lambda source, seed: f"classifier of {source}")
    monkeypatch.setattr(text_quickstart, "run_attack", fake_attack)
    settings = TextQuickstartSettings(budgets=[20, 200], tuned_trials=0)
    rows = text_quickstart.attack_rows({"blocked": "B", "scratch": None}, settings, None, None, None, seed=7,
                                       tokenizer_path="a tokenizer", progress=False)
    attacks = len(text_quickstart.attack_specs(settings, 7, "a tokenizer"))
    assert len(rows) == len(runs) == 2 * (3 + 1) * attacks
    assert {(row["encoder"], row["budget"], row["draw"]) for row in rows} == {
        (encoder, 20, draw) for encoder in ("blocked", "scratch") for draw in range(3)} | {
        (encoder, 200, 0) for encoder in ("blocked", "scratch")}
    # Draw d attacks with seed 7 + d, on the budget's examples per class, without the step-0 evaluation.
    assert {(model, per_class, seed) for model, per_class, seed, _ in runs} == {
        (f"classifier of {source}", 10, 7 + draw) for source in ("B", None) for draw in range(3)} | {
        (f"classifier of {source}", 100, 7) for source in ("B", None)}
    assert not any(at_start for *_, at_start in runs)
    assert _strongest(rows)["blocked"][20] == pytest.approx(0.5 + 8 / 100)  # seeds 7, 8, 9 averaged


def test_probe_then_fine_tune_trains_the_head_alone_before_the_encoder(tmp_path):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, TrainingArguments

    from hf_nft.data import tokenize_text_dataset
    from hf_nft.text_models import tiny_bert_classifier, word_tokenizer

    texts = [f"review number {i} was {'good' if i % 2 else 'bad'}" for i in range(32)]
    tokenizer = word_tokenizer(texts, vocab_size=60)
    data = tokenize_text_dataset(Dataset.from_dict({"text": texts, "labels": [i % 2 for i in range(32)]}),
                                 tokenizer, 16)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True)

    def changes(settings: TextQuickstartSettings) -> tuple[bool, bool]:
        model = tiny_bert_classifier(len(tokenizer), num_labels=2, mean_pooling=True)
        encoder = {k: v.clone() for k, v in model.base_model.state_dict().items()}
        head = model.classifier.weight.detach().clone()
        text_quickstart.probe_then_fine_tune(model, data, settings, DataCollatorWithPadding(tokenizer), tokenizer,
                                             args)
        moved = any(not torch.equal(encoder[k], v) for k, v in model.base_model.state_dict().items())
        assert all(p.requires_grad for p in model.parameters())  # the encoder is trainable again afterwards
        return moved, not torch.equal(head, model.classifier.weight)

    phases = {"head_epochs": 1.0, "head_learning_rate": 1e-2, "finetune_epochs": 1.0}
    # With the fine-tuning rate at zero only the head phase can move anything: the encoder stays as it was.
    assert changes(TextQuickstartSettings(**phases, finetune_learning_rate=0.0)) == (False, True)
    assert changes(TextQuickstartSettings(**phases, finetune_learning_rate=1e-3)) == (True, True)
