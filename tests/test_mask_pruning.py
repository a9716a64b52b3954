"""MAP: mask mechanics, baking into a plain model, each setting on tiny configs, config validation, metrics."""

import pytest
import torch
from conftest import image_dataset, tiny_resnet
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, ResNetForImageClassification

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.attacks.batches import collated
from hf_nft.attacks.runner import score_model
from hf_nft.evaluation.metrics import get_metric
from hf_nft.evaluation.transfer import TransferResult, measure_transfer
from hf_nft.methods._masking import HardMask, apply_masks, attach_masks, current_masks, maskable_modules
from hf_nft.methods._synthesis import as_dataset, blocky, synthesize_inputs


def config(tmp_path, **overrides):
    values = {"output_dir": str(tmp_path / "out"), "max_steps": 60, "per_device_train_batch_size": 16,
              "report_to": [], "save_strategy": "no", "logging_steps": 10, "adversary_batch_sizes": [16],
              "query_batch_size": 16, "disable_tqdm": True, "use_cpu": True, "nft_method": "map",
              "learning_rate": 0.005, "lr_scheduler_type": "constant", "max_grad_norm": 0.0, "guard_every": 0,
              "mask_max_sparsity": 0.5}
    values.update(overrides)
    return NFTConfig(**values)


@pytest.fixture(scope="module")
def pretrained_state():
    """A tiny ResNet trained on the original domain (its state dict; each test builds a fresh copy)."""
    model, data = tiny_resnet(), image_dataset(128, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = {"pixel_values": data[:]["pixel_values"], "labels": data[:]["labels"]}
    for _ in range(40):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return {name: value.clone() for name, value in model.state_dict().items()}


def pretrained(state) -> ResNetForImageClassification:
    model = tiny_resnet()
    model.load_state_dict(state)
    return model


def accuracy(model, dataset) -> float:
    return score_model(model, collated(dataset), get_metric("accuracy"))


def test_gradients_reach_scores_and_originals_stay_frozen():
    layer = torch.nn.Linear(6, 4)
    attach_masks(layer, [""], max_sparsity=0.5, score_init=0.01)
    original = layer.parametrizations.weight.original
    layer(torch.randn(3, 6)).pow(2).sum().backward()
    scores = layer.parametrizations.weight[0].scores
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    assert original.grad is None and not original.requires_grad and not layer.bias.requires_grad
    assert torch.equal(layer.weight, original)  # scores start positive: nothing pruned yet


@pytest.mark.parametrize("cap", [0.25, 0.5, 1.0])
def test_sparsity_cap_prunes_only_the_lowest_scores(cap):
    mask = HardMask(torch.ones(10, 8), max_sparsity=cap, score_init=1.0)
    with torch.no_grad():
        mask.scores.copy_(-torch.arange(80.0).view(10, 8))  # every score wants pruning
    hard = mask.mask()
    assert int((hard == 0).sum()) == int(cap * 80)
    pruned_scores = mask.scores[hard == 0]
    kept_scores = mask.scores[hard == 1]
    assert kept_scores.numel() == 0 or pruned_scores.max() < kept_scores.min()


def test_head_is_masked_only_when_asked(model):
    names = maskable_modules(model)
    assert names and "classifier.1" not in names
    assert "classifier.1" in maskable_modules(model, include_head=True)
    assert all("stages" in name for name in maskable_modules(model, targets=["stages"]))


def test_source_available_masks_target_bakes_a_plain_model(tmp_path, pretrained_state, original, restricted):
    model, unprotected = pretrained(pretrained_state), pretrained(pretrained_state)
    original_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = NFTTrainer(model=model, args=config(tmp_path), train_dataset=original, restricted_dataset=restricted)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.endswith(".scores") for name in trainable)
    trainer.train()

    # Baked: an ordinary model, weights = original * mask, nothing else changed, cap respected per tensor.
    masks = trainer.method.masks
    assert not any("parametrizations" in key for key in model.state_dict())
    for name, value in model.named_parameters():
        expected = original_weights[name] * masks[name] if name in masks else original_weights[name]
        assert torch.equal(value, expected), name
    assert all((mask == 0).float().mean() <= 0.5 for mask in masks.values())
    assert 0 < sum(int((m == 0).sum()) for m in masks.values())

    # Saved plainly, with the mask beside it; the mask re-applied to the unprotected model gives the same model.
    trainer.save_model()
    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "out")
    apply_masks(unprotected, tmp_path / "out" / "mask.safetensors")
    pixels = restricted[:8]["pixel_values"]
    with torch.no_grad():
        for other in (saved, unprotected):
            torch.testing.assert_close(other.eval()(pixel_values=pixels).logits, model.eval()(pixel_values=pixels).logits)
    assert set(load_file(str(tmp_path / "out" / "mask.safetensors"))) == set(masks)

    result = measure_transfer(pretrained(pretrained_state), model, original, restricted)
    assert result.target_after < result.target_before - 0.2
    assert result.source_after >= result.source_before - 0.1


def test_masked_forward_equals_baked_forward(tmp_path, pretrained_state, original, restricted):
    model = pretrained(pretrained_state)
    trainer = NFTTrainer(model=model, args=config(tmp_path, max_steps=5), train_dataset=original,
                         restricted_dataset=restricted)
    trainer.train()
    model.eval()
    # rebuild the parametrized forward from the saved masks and compare with the baked model
    rebuilt = pretrained(pretrained_state).eval()
    attach_masks(rebuilt, list(trainer.method.module_names), 0.5, 0.01)
    with torch.no_grad():
        for name in current_masks(rebuilt):
            module = dict(rebuilt.named_modules())[name.removesuffix(".weight")]
            module.parametrizations.weight[0].scores.copy_(trainer.method.masks[name] * 2 - 1)
        pixels = original[:8]["pixel_values"]
        torch.testing.assert_close(rebuilt(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


@pytest.mark.parametrize("setting", ["source-free", "data-free"])
def test_source_free_and_data_free_lower_target_accuracy(tmp_path, pretrained_state, original, restricted, setting):
    teacher = pretrained(pretrained_state)
    pixels, labels = synthesize_inputs(teacher, 32, (1, 16, 16), steps=30, seed=0)
    assert pixels.abs().max() <= 1 and labels.shape == (32,)
    assert torch.equal(teacher.state_dict()["classifier.1.weight"], pretrained_state["classifier.1.weight"])
    pseudo_source = as_dataset(pixels, labels, 4)
    if setting == "source-free":
        target_train, target_eval = restricted, restricted
    else:  # a target domain described as "the source, rendered blocky"
        target_train = as_dataset(blocky(pixels), labels, 4)
        target_eval = as_dataset(blocky(original[:]["pixel_values"]), original[:]["labels"], 4)
    model = pretrained(pretrained_state)
    trainer = NFTTrainer(model=model, args=config(tmp_path, map_setting=setting), train_dataset=pseudo_source,
                         restricted_dataset=target_train)
    assert trainer.method.teacher is not None
    trainer.train()
    assert accuracy(model, target_eval) < accuracy(teacher, target_eval) - 0.1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"map_setting": "source-less"}, "Unknown map_setting"),
        ({"mask_max_sparsity": 0.0}, "mask_max_sparsity must be in"),
        ({"mask_max_sparsity": 1.5}, "mask_max_sparsity must be in"),
        ({"mask_score_init": 0.0}, "mask_score_init must be positive"),
        ({"map_target_weight": -1.0}, "map_target_weight must be non-negative"),
        ({"map_distill_temperature": 0.0}, "map_distill_temperature must be positive"),
    ],
)
def test_bad_map_config_values_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_bad_map_inputs_fail_before_training(tmp_path, original, restricted):
    with pytest.raises(ValueError, match="no linear/convolution weight to mask"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path, mask_target_modules=["absent"]),
                   train_dataset=original, restricted_dataset=restricted)
    with pytest.raises(ValueError, match="pseudo-source train_dataset; got None"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path, map_setting="data-free"), restricted_dataset=restricted)
    with pytest.raises(ValueError, match="No masks yet"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path), train_dataset=original,
                   restricted_dataset=restricted).method.save_masks(tmp_path)


def test_balance_score():
    perfect = TransferResult(source_before=0.9, source_after=0.9, target_before=0.7, target_after=0.1, chance=0.1)
    assert perfect.balance == pytest.approx(1.0)
    assert perfect.source_drop == pytest.approx(0.0) and perfect.target_drop == pytest.approx(0.6)
    nothing_removed = TransferResult(0.9, 0.9, 0.7, 0.7, 0.1)
    source_destroyed = TransferResult(0.9, 0.0, 0.7, 0.1, 0.1)
    assert nothing_removed.balance == 0.0 and source_destroyed.balance == 0.0
    half = TransferResult(0.9, 0.9, 0.7, 0.4, 0.1)  # removal 0.5, retention 1 -> harmonic mean 2/3
    assert half.balance == pytest.approx(2 / 3)
