"""EncoderLock: weight selection, the challenger loop, each data setting on tiny configs, bad input, saving."""

import pytest
import torch
from conftest import image_dataset, tiny_resnet
from datasets import Dataset
from transformers import AutoModelForImageClassification, ResNetConfig, ResNetModel

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.methods.encoderlock import (
    EncoderLock,
    blocky_standins,
    encode,
    lockable_weights,
    probe_accuracy,
    train_probe,
)


def config(tmp_path, **overrides):
    values = {"output_dir": str(tmp_path / "out"), "max_steps": 12, "per_device_train_batch_size": 16,
              "report_to": [], "save_strategy": "no", "logging_steps": 4, "disable_tqdm": True, "use_cpu": True,
              "nft_method": "encoderlock", "learning_rate": 0.02, "lr_scheduler_type": "constant",
              "max_grad_norm": 0.0, "guard_every": 0, "encoderlock_round_steps": 4,
              "encoderlock_weights_per_round": 20, "encoderlock_probe_steps": 40, "encoderlock_score_examples": 32}
    values.update(overrides)
    return NFTConfig(**values)


def prohibited_data(n: int = 96):
    """Labels encoded by a bright row band instead of a quadrant: another domain, same label space."""
    generator = torch.Generator().manual_seed(5)
    labels = torch.arange(n) % 4
    images = torch.randn(n, 1, 16, 16, generator=generator) * 0.3
    for index, label in enumerate(labels.tolist()):
        images[index, :, label * 4:(label + 1) * 4, :] += 1.5
    return Dataset.from_dict({"pixel_values": images.numpy(), "labels": labels.numpy()}).with_format("torch")


@pytest.fixture(scope="module")
def pretrained_state():
    """A tiny ResNet trained on both domains (a pre-trained encoder useful to both; its state dict)."""
    model, authorized, prohibited = tiny_resnet(), image_dataset(96, seed=1), prohibited_data(128)
    pixels = torch.cat([authorized[:]["pixel_values"], prohibited[:]["pixel_values"]])
    labels = torch.cat([authorized[:]["labels"], prohibited[:]["labels"]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()
    return {name: value.clone() for name, value in model.state_dict().items()}


def pretrained(state):
    model = tiny_resnet()
    model.load_state_dict(state)
    return model


def trained_model(tmp_path, setting, restricted, state=None, **overrides):
    model = pretrained(state) if state is not None else tiny_resnet()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = NFTTrainer(model=model, args=config(tmp_path, encoderlock_setting=setting, **overrides),
                         train_dataset=image_dataset(96, seed=1), restricted_dataset=restricted)
    trainer.train()
    return trainer, model, before


def test_lockable_weights_exclude_head_biases_and_norms():
    names = set(lockable_weights(tiny_resnet()))
    assert names and all(not name.startswith("classifier.") for name in names)
    assert all("normalization" not in name and not name.endswith("bias") for name in names)


def test_embedding_tables_are_not_lockable():
    from hf_nft.text_models import tiny_bert_classifier

    names = set(lockable_weights(tiny_bert_classifier(vocab_size=50, num_labels=2)))
    assert any("attention" in name for name in names) and "bert.pooler.dense.weight" in names
    assert not any("embeddings" in name for name in names)


def test_selection_is_round_by_round_masked_and_counted(tmp_path):
    trainer, model, before = trained_model(tmp_path, "supervised", prohibited_data())
    method = trainer.method
    assert method.rounds == 3  # 12 steps, a round every 4
    changes = method.changes()
    assert changes["weights_selected"] == 3 * 20  # N weights per round, OR-accumulated
    assert 0 < changes["weights_changed"] <= changes["weights_selected"]
    assert changes["weights_changed_share"] == pytest.approx(changes["weights_changed"] / changes["encoder_parameters"])
    for name, parameter in model.named_parameters():
        moved = parameter.detach() != before[name]
        if name in method.masks:
            assert not moved[~method.masks[name]].any(), name  # only selected weights change
        else:
            assert not moved.any(), name  # head, biases, norms untouched
        assert parameter.requires_grad  # an ordinary model again after training
    assert trainer.method.settings()["weights_changed"] == changes["weights_changed"]


def test_selection_prefers_weights_that_matter_to_the_prohibited_domain(tmp_path):
    trainer, _, _ = trained_model(tmp_path, "supervised", prohibited_data(), max_steps=1,
                                  encoderlock_layers_per_round=1)
    selected = {name for name, mask in trainer.method.masks.items() if mask.any()}
    assert len(selected) == 1  # M = 1 layer per round


def test_challenger_is_the_stronger_probe_and_the_lock_defeats_a_probe_of_the_released_encoder(
        tmp_path, pretrained_state):
    restricted, authorized = prohibited_data(128), image_dataset(96, seed=1)
    trainer, model, _ = trained_model(tmp_path, "supervised", restricted, pretrained_state, max_steps=30,
                                      encoderlock_round_steps=10, encoderlock_weights_per_round=200)
    method = trainer.method
    assert set(method.probe_accuracies) == {"linear", "mlp"}
    assert method.challenger_accuracy == max(method.probe_accuracies.values())
    assert method.probe_accuracies[method.challenger_kind] == method.challenger_accuracy
    released = pretrained(pretrained_state).eval()
    model.eval()
    pixels, labels = restricted[:]["pixel_values"], restricted[:]["labels"]
    with torch.no_grad():
        before, after = encode(released, {"pixel_values": pixels}), encode(model, {"pixel_values": pixels})
        probe = train_probe("linear", before, labels, 4, 200, 128, torch.Generator().manual_seed(0))
        assert probe_accuracy(probe, before, labels) > 0.9
        assert probe_accuracy(probe, after, labels) < 0.6  # the probe an attacker fitted before the lock fails
        own_before = (released(pixel_values=authorized[:]["pixel_values"]).logits.argmax(-1) == authorized[:]["labels"])
        own_after = (model(pixel_values=authorized[:]["pixel_values"]).logits.argmax(-1) == authorized[:]["labels"])
    assert own_after.float().mean() >= own_before.float().mean() - 0.1  # the authorized task is kept


def test_unsupervised_ignores_labels_and_clusters(tmp_path):
    restricted = prohibited_data().remove_columns("labels")
    trainer, _, _ = trained_model(tmp_path, "unsupervised", restricted)
    pool = trainer.method._prohibited
    assert set(pool["labels"].tolist()) == set(range(4)) and pool["classes"] == 4  # k-means pseudo-labels
    assert trainer.method.changes()["weights_changed"] > 0


def test_zero_shot_synthesises_blocky_standins_from_the_authorized_data(tmp_path):
    trainer, _, _ = trained_model(tmp_path, "zero-shot", None)
    pool = trainer.method._prohibited
    standins = pool["dataset"][:]["pixel_values"]
    assert len(pool["labels"]) == 96
    assert torch.equal(standins[:, :, ::2, ::2], standins[:, :, 1::2, 1::2])  # 2x2 blocks: half resolution
    assert trainer.method.changes()["weights_changed"] > 0
    assert torch.equal(blocky_standins(image_dataset(8))[:]["labels"], image_dataset(8)[:]["labels"])


def test_supervised_without_prohibited_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="supervised setting needs labelled prohibited data"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path), train_dataset=image_dataset(16))
    unlabelled = prohibited_data(16).remove_columns("labels")
    with pytest.raises(ValueError, match="no 'labels' column"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path), train_dataset=image_dataset(16),
                   restricted_dataset=unlabelled)


def test_zero_shot_with_prohibited_data_and_bad_settings_are_errors(tmp_path):
    with pytest.raises(ValueError, match="zero-shot setting uses no prohibited data"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path, encoderlock_setting="zero-shot"),
                   train_dataset=image_dataset(16), restricted_dataset=prohibited_data(16))
    text = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 4, "labels": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match="'blocky' needs image data with a 'pixel_values' column"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path, encoderlock_setting="zero-shot"), train_dataset=text)
    with pytest.raises(ValueError, match="encoderlock_setting"):
        config(tmp_path, encoderlock_setting="semi")
    with pytest.raises(ValueError, match="encoderlock_weights_per_round"):
        config(tmp_path, encoderlock_weights_per_round=0)


def test_a_model_with_no_encoder_to_probe_is_a_clear_error(tmp_path):
    backbone = ResNetModel(ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8], depths=[1]))
    with pytest.raises(ValueError, match="classification head"):
        NFTTrainer(model=backbone, args=config(tmp_path), train_dataset=image_dataset(16),
                   restricted_dataset=prohibited_data(16))
    head_only = torch.nn.Module()
    head_only.config = type("Config", (), {"num_labels": 4})()
    head_only.classifier = torch.nn.Linear(8, 4)
    assert lockable_weights(head_only) == {}
    with pytest.raises(ValueError, match="no encoder to probe"):
        EncoderLock.validate(type("Stub", (), {"model": head_only, "weights": {}, "trainer": None})())


def test_locked_model_saves_and_loads_with_plain_from_pretrained(tmp_path):
    trainer, model, _ = trained_model(tmp_path, "supervised", prohibited_data())
    trainer.save_model(str(tmp_path / "locked"))
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "locked")
    for (name, saved), (_, reloaded) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(saved, reloaded), name
