"""Attack specs, kinds, runner and suites: what each attack trains, bad input, determinism."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ResNetModel,
    ViTConfig,
    ViTForImageClassification,
)

from hf_nft.attacks import tuned as tuned_module
from hf_nft.attacks.base import Attack
from hf_nft.attacks.batches import AttackData
from hf_nft.attacks.lora import default_target_modules
from hf_nft.attacks.partial_finetune import block_list
from hf_nft.attacks.runner import execute, run_attack
from hf_nft.attacks.spec import AttackSpec
from hf_nft.attacks.suite import SUITES, Suite, load_suite
from hf_nft.cli import main
from hf_nft.data import load_domain, per_class_subset
from hf_nft.evaluation.metrics import get_metric
from hf_nft.registry import ATTACKS

torch.set_num_threads(1)


def tiny_resnet(num_labels: int = 10, seed: int = 0) -> ResNetForImageClassification:
    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1],
                          layer_type="basic", num_labels=num_labels)
    return ResNetForImageClassification(config)


def tiny_vit(seed: int = 0) -> ViTForImageClassification:
    torch.manual_seed(seed)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, num_labels=10)
    return ViTForImageClassification(config)


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config)


def text_dataset(n: int, seed: int = 0) -> Dataset:
    """Random token ids; the label is whether token 1 (a marker) is in the sequence."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 100, (n, 12), generator=generator)
    labels = torch.arange(n) % 2
    ids[labels == 1, 3] = 1
    data = {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy(), "labels": labels.numpy()}
    return Dataset.from_dict(data).with_format("torch")


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    """uci-digits: the training split and 200 test images."""
    return load_domain("uci-digits", "train"), per_class_subset(load_domain("uci-digits", "test"), 20)


def model_and_data(name: str, digits: tuple[Dataset, Dataset]):
    if name == "bert":
        return tiny_bert(), text_dataset(64, seed=1), text_dataset(40, seed=2)
    return (tiny_resnet() if name == "resnet" else tiny_vit()), *digits


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def changed(before: torch.Tensor, after: torch.Tensor) -> bool:
    return not torch.equal(before, after)


# -- specs -----------------------------------------------------------------------------------------------


def test_spec_round_trips_through_json_and_yaml(tmp_path):
    spec = AttackSpec(kind="lora", optimizer="adamw", learning_rate=3e-3, weight_decay=0.01, reset_head=True,
                      examples_per_class=8, options={"rank": 4, "target_modules": ["q_proj"]})
    for suffix in ("json", "yaml"):
        spec.save(tmp_path / f"spec.{suffix}")
        assert AttackSpec.load(tmp_path / f"spec.{suffix}") == spec
    assert spec.name == "lora/reset/adamw/lr=0.003"
    assert AttackSpec.from_dict({"kind": "full_finetune", "learning_rate": "1e-3"}).learning_rate == 1e-3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "full_fintune"}, "Did you mean 'full_finetune'"),
        ({"kind": "lora", "optimizer": "adamm"}, "Did you mean 'adam'"),
        ({"kind": "lora", "examples_per_class": 0}, "data budget"),
        ({"kind": "lora", "steps": 0}, "steps must be positive"),
        ({"kind": "lora", "learning_rate": "fast"}, "learning_rate must be a number"),
        ({"kind": "mlp_probe", "options": {"hiden_size": 8}}, "Did you mean 'hidden_size'"),
        ({"kind": "mlp_probe", "options": {"hidden_size": 0}}, "hidden_size must be a positive integer"),
        ({"kind": "peft", "options": {"method": "lohaa"}}, "Did you mean 'loha'"),
        ({"kind": "tuned", "options": {"kinds": ["full_finetune", "tuned"]}}, "cannot search"),
        ({"kind": "tuned", "options": {"learning_rate": [0.1, 0.001]}}, "low <= high"),
        ({"kind": "lora", "learnig_rate": 0.1}, "Did you mean 'learning_rate'"),
    ],
)
def test_bad_specs_fail_with_a_clear_message(fields, message):
    with pytest.raises(ValueError, match=message):
        AttackSpec.from_dict(fields)


# -- what each kind trains -------------------------------------------------------------------------------


def head_prefix(name: str) -> str:
    return "classifier.1." if name == "resnet" else "classifier."


@pytest.mark.parametrize("model_name", ["resnet", "vit", "bert"])
@pytest.mark.parametrize("kind", ["full_finetune", "partial_finetune", "linear_probe", "mlp_probe", "lora"])
def test_each_kind_trains_exactly_what_it_should(model_name, kind, digits):
    model, train, test = model_and_data(model_name, digits)
    before = snapshot(model)
    spec = AttackSpec(kind=kind, steps=6, eval_every=3, batch_size=8, examples_per_class=4, learning_rate=1e-2)
    run = run_attack(model, spec, train, test, return_model=True)

    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items()), "input modified"
    assert run.steps == [0, 3, 6] and all(0.0 <= v <= 1.0 for v in run.values)
    attacked = dict(run.model.named_parameters())
    original = dict(model.named_parameters())
    head = head_prefix(model_name)
    if kind == "full_finetune":
        assert set(run.trainable) == set(original)
        assert all(changed(original[n], attacked[n]) for n in original)
    elif kind == "partial_finetune":
        prefix, blocks = block_list(model)
        last = f"{prefix}.{len(blocks) - 1}."
        assert any(n.startswith(last) for n in run.trainable) and any(n.startswith(head) for n in run.trainable)
        assert not any(n.startswith(f"{prefix}.0.") for n in run.trainable)
        for name in original:
            assert changed(original[name], attacked[name]) == (name in run.trainable), name
    elif kind in ("linear_probe", "mlp_probe"):
        assert run.trainable and all(n.startswith(head) for n in run.trainable)
        body = [n for n in original if not n.startswith(head)]
        assert all(torch.equal(original[n], attacked[n]) for n in body)
        assert all(changed(original[n], attacked[n]) for n in run.trainable if n in original)
        if kind == "mlp_probe":
            assert isinstance(run.model.get_submodule(head.rstrip(".")), torch.nn.Sequential)
    else:  # lora: adapters and the head train, every base weight stays
        assert any("lora_B" in n for n in run.trainable) and any("modules_to_save" in n for n in run.trainable)
        assert all("lora_" in n or "modules_to_save" in n for n in run.trainable)
        assert all(attacked[n].abs().sum() > 0 for n in run.trainable if "lora_B" in n)  # zero-initialised
        for name, value in attacked.items():
            if name not in run.trainable:
                base = name.removeprefix("base_model.model.").replace(".base_layer", "").replace(".original_module", "")
                assert torch.equal(original[base], value), name


def test_default_adapter_targets_per_architecture():
    assert default_target_modules(tiny_vit()) == ["q_proj", "v_proj"]
    assert default_target_modules(tiny_bert()) == ["query", "value"]
    resnet = tiny_resnet()
    convolutions = [n for n, m in resnet.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert default_target_modules(resnet) == convolutions
    from transformers import ConvNextConfig, ConvNextForImageClassification

    convnext = ConvNextForImageClassification(ConvNextConfig(num_channels=1, patch_size=2, num_stages=2,
                                                             hidden_sizes=[8, 16], depths=[1, 1], num_labels=10))
    targets = default_target_modules(convnext)
    assert not any("dwconv" in name for name in targets)  # depthwise: peft LoRA cannot adapt it at rank 8
    assert any(name.endswith("pwconv1") for name in targets) and "classifier" not in targets


def test_other_peft_methods_by_name(digits):
    model, train, test = model_and_data("vit", digits)
    spec = AttackSpec(kind="peft", steps=4, eval_every=4, examples_per_class=2, options={"method": "loha"})
    run = run_attack(model, spec, train, test)
    assert any("hada_" in n for n in run.trainable)
    assert all("hada_" in n or "modules_to_save" in n for n in run.trainable)


def test_reset_head_reinitialises_only_the_head(digits):
    model = tiny_resnet()
    spec = AttackSpec(kind="full_finetune", reset_head=True)
    attack = ATTACKS.get("full_finetune")(spec)
    copy = tiny_resnet()
    attack.prepare(copy, AttackData(*digits), torch.device("cpu"))
    for (name, a), b in zip(model.named_parameters(), copy.parameters()):
        assert changed(a, b) == name.startswith("classifier."), name


def test_full_finetuning_learns_the_restricted_domain(digits):
    train, test = digits
    spec = AttackSpec(kind="full_finetune", steps=60, eval_every=20, examples_per_class=10, learning_rate=3e-3)
    run = run_attack(tiny_resnet(), spec, train, test)
    assert run.values[0] < 0.2 and run.final > 0.4, run.values


def test_runs_are_reproducible_and_leave_the_global_rng_alone(digits):
    spec = AttackSpec(kind="lora", steps=4, eval_every=2, examples_per_class=2, seed=3)
    state = torch.get_rng_state()
    first = run_attack(tiny_resnet(), spec, *digits)
    assert torch.equal(state, torch.get_rng_state())
    assert run_attack(tiny_resnet(), spec, *digits).values == first.values
    assert run_attack(tiny_resnet(), spec.replace(seed=4), *digits).values != first.values


def test_a_run_can_skip_the_evaluation_before_its_first_step(digits):
    spec = AttackSpec(kind="full_finetune", steps=4, eval_every=2, examples_per_class=2, seed=1)
    full, final_only = run_attack(tiny_resnet(), spec, *digits), run_attack(
        tiny_resnet(), spec.replace(eval_at_start=False), *digits)
    assert full.steps == [0, 2, 4] and final_only.steps == [2, 4]
    assert final_only.values == full.values[1:]
    with pytest.raises(ValueError, match="eval_at_start must be true or false"):
        spec.replace(eval_at_start="no")


def test_tuned_attacker_searches_then_reruns_its_best_configuration(digits, monkeypatch):
    options = {"trials": 3, "steps": [4, 8], "kinds": ["full_finetune", "linear_probe"], "pruning": False}
    spec = AttackSpec(kind="tuned", examples_per_class=3, eval_every=4, options=options)
    calls = []
    monkeypatch.setattr(tuned_module, "execute", lambda *args, **kwargs: calls.append(args[1]) or execute(*args, **kwargs))
    run = run_attack(tiny_resnet(), spec, *digits)
    assert run.spec.name == "tuned" and run.spec.kind in ("full_finetune", "linear_probe")
    assert run.search["trials"] == 3 and 4 <= run.spec.steps <= 8
    assert run.final == pytest.approx(run.search["best_value"])  # the same configuration and seed
    # The best trial ran that configuration at the spec's seed already: it is not run a fourth time, and running
    # it afresh gives the same curve.
    assert len(calls) == 3 and run.spec in calls
    assert execute(tiny_resnet(), run.spec, AttackData(*digits), get_metric("accuracy")).values == run.values


# -- bad input, before any work --------------------------------------------------------------------------


def test_labels_that_do_not_fit_the_model(digits):
    with pytest.raises(ValueError, match="10 classes but the model's classification head has 4 outputs"):
        run_attack(tiny_resnet(num_labels=4), AttackSpec(kind="full_finetune"), *digits)


def test_a_model_that_is_not_a_classifier(tmp_path, digits):
    ResNetModel(tiny_resnet().config).save_pretrained(tmp_path / "backbone")
    with pytest.raises(ValueError, match="ResNetModel is not a classifier"):
        run_attack(tmp_path / "backbone", AttackSpec(kind="full_finetune"), *digits)
    with pytest.raises(ValueError, match="not a model directory"):
        run_attack(tmp_path / "missing", AttackSpec(kind="full_finetune"), *digits)


def test_too_many_blocks_for_partial_finetuning(digits):
    spec = AttackSpec(kind="partial_finetune", options={"num_blocks": 9})
    with pytest.raises(ValueError, match="num_blocks must be between 1 and 3"):
        run_attack(tiny_resnet(), spec, *digits)


# -- suites -----------------------------------------------------------------------------------------------


def test_builtin_suites():
    default = load_suite("default")
    kinds = {(spec.kind, spec.reset_head) for spec in default.attacks}
    assert {("full_finetune", False), ("full_finetune", True), ("partial_finetune", False), ("lora", False)} <= kinds
    assert {"linear_probe", "mlp_probe"} <= {kind for kind, _ in kinds}
    assert len({spec.optimizer for spec in default.attacks}) >= 5
    assert len({spec.learning_rate for spec in default.attacks}) >= 3
    assert all(spec.examples_per_class == 1 and spec.steps <= 300 for spec in default.attacks)
    assert len(default.seeds) >= 2 and "tuned" in {spec.kind for spec in default.attacks}
    strong = load_suite("strong")
    assert "tuned" in {spec.kind for spec in strong.attacks} and len(strong.seeds) >= len(default.seeds)
    assert max(spec.steps for spec in strong.attacks) > max(spec.steps for spec in default.attacks)
    assert len(load_suite("quick").attacks) <= 4
    assert set(SUITES) == {"quick", "default", "strong"}


def test_suite_files_round_trip_and_apply_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nseeds: [1, 2]\nexamples_per_class: 6\ndefaults: {steps: 40, eval_every: 10}\n"
        "attacks:\n  - {kind: full_finetune, learning_rate: 1e-3}\n  - {kind: lora, steps: 20, options: {rank: 4}}\n"
    )
    suite = load_suite(path)
    assert suite.name == "mine" and suite.seeds == [1, 2]
    assert [spec.steps for spec in suite.attacks] == [40, 20]
    assert all(spec.examples_per_class == 6 and spec.eval_every == 10 for spec in suite.attacks)
    for copy in (tmp_path / "copy.json", tmp_path / "copy.yaml"):
        suite.save(copy)
        assert load_suite(copy) == suite


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("attacks: [{kind: full_finetune}\n", "not a readable YAML file"),
        ("- just a list\n", "must be a mapping"),
        ("attacks: [{kind: full_finetune}]\nseed: [0]\n", "Did you mean 'seeds'"),
        ("attacks: [{kind: lorra}]\n", "Did you mean 'lora'"),
        ("attacks: []\n", "no attacks"),
        ("examples_per_class: 0\nattacks: [{kind: lora}]\n", "data budget"),
        ("attacks: [{kind: lora}, {kind: lora}]\n", "names must be unique"),
    ],
)
def test_corrupt_suite_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_suite(path)
    assert str(path) in str(error.value)


def test_unknown_suite_name():
    with pytest.raises(ValueError, match="Did you mean 'default'"):
        load_suite("defualt")
    with pytest.raises(ValueError, match="no such file"):
        load_suite("missing.yaml")


def test_every_registered_kind_is_an_attack_or_a_search():
    assert {"full_finetune", "partial_finetune", "linear_probe", "mlp_probe", "lora", "peft", "tuned"} <= set(ATTACKS)
    assert issubclass(ATTACKS.get("lora"), Attack)


# -- command line ------------------------------------------------------------------------------------------


def test_attack_command_writes_report_and_plot(tmp_path, capsys):
    tiny_resnet().save_pretrained(tmp_path / "model")
    tiny_resnet(seed=1).save_pretrained(tmp_path / "reference")
    Suite(name="cli", seeds=[0], attacks=[
        AttackSpec(kind="full_finetune", steps=4, eval_every=2, examples_per_class=2),
        AttackSpec(kind="linear_probe", steps=4, eval_every=2, examples_per_class=2),
    ]).save(tmp_path / "suite.json")
    code = main(["attack", str(tmp_path / "model"), "--restricted", "uci-digits", "--original", "mnist",
                 "--suite", str(tmp_path / "suite.json"), "--reference", str(tmp_path / "reference"),
                 "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    table = capsys.readouterr().out
    assert "protected" in table and "unprotected" in table and "scratch" in table and "linear_probe" in table
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["results"]["linear_probe/adam/lr=0.001"]) == {"protected", "unprotected", "scratch"}
    assert (tmp_path / "out" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_attack_command_reports_bad_input(tmp_path, capsys):
    tiny_resnet(num_labels=4).save_pretrained(tmp_path / "model")
    code = main(["attack", str(tmp_path / "model"), "--restricted", "uci-digits", "--output", str(tmp_path / "o")])
    assert code == 2 and "4 outputs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
