import pytest
import torch
from transformers import AutoModelForImageClassification, TrainingArguments

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.data import load_domain

from conftest import image_dataset, tiny_resnet


def config(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=16, report_to=[],
                  save_strategy="no", logging_steps=2, inner_steps=2, adversary_batch_sizes=[8],
                  query_batch_size=8, disable_tqdm=True, use_cpu=True)
    values.update(overrides)
    return NFTConfig(**values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nft_loss": "cross_entropy"}, "Unknown nft_loss"),
        ({"inner_steps": 0}, "inner_steps must be a positive"),
        ({"adversary_pool": ["adamm:0.001"]}, "Did you mean 'adam'"),
        ({"adversary_pool": ["adam:-1"]}, "learning rate must be positive"),
        ({"adversary_pool": ["adam"]}, "optimizer:learning_rate"),
        ({"adversary_pool": []}, "adversary_pool is empty"),
        ({"head_reset_probability": 1.5}, "head_reset_probability"),
        ({"alpha": -1.0}, "alpha must be non-negative"),
        ({"adversary_batch_sizes": [0]}, "adversary_batch_sizes"),
    ],
)
def test_bad_config_values_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_bad_inputs_fail_before_training(tmp_path, original, restricted):
    args = config(tmp_path)
    with pytest.raises(ValueError, match="restricted_dataset; got None"):
        NFTTrainer(model=tiny_resnet(), args=args, train_dataset=original)
    with pytest.raises(ValueError, match="restricted_dataset is empty"):
        NFTTrainer(model=tiny_resnet(), args=args, train_dataset=original, restricted_dataset=restricted.select([]))
    with pytest.raises(ValueError, match="no 'labels' column"):
        NFTTrainer(model=tiny_resnet(), args=args, train_dataset=original,
                   restricted_dataset=restricted.remove_columns("labels"))
    with pytest.raises(ValueError, match="10 classes but the model's head has 4 labels"):
        NFTTrainer(model=tiny_resnet(num_labels=4), args=args, train_dataset=original,
                   restricted_dataset=load_domain("uci-digits", "test"))
    with pytest.raises(ValueError, match="Unknown methods 'sofon'. Did you mean 'sophon'"):
        NFTTrainer(model=tiny_resnet(), args=config(tmp_path, nft_method="sofon"), train_dataset=original,
                   restricted_dataset=restricted)


def test_model_without_a_classification_head_is_rejected(tmp_path, original, restricted):
    backbone = tiny_resnet().resnet
    backbone.config.num_labels = 4
    with pytest.raises(ValueError, match="no linear classification head"):
        NFTTrainer(model=backbone, args=config(tmp_path), train_dataset=original, restricted_dataset=restricted)


def test_plain_training_arguments_are_upgraded_and_kept(tmp_path, original, restricted):
    args = TrainingArguments(output_dir=str(tmp_path / "plain"), learning_rate=3e-4, max_steps=2, report_to=[],
                             per_device_train_batch_size=16, use_cpu=True)
    trainer = NFTTrainer(model=tiny_resnet(), args=args, train_dataset=original, restricted_dataset=restricted)
    assert isinstance(trainer.args, NFTConfig)
    assert trainer.args.learning_rate == 3e-4 and trainer.args.max_steps == 2
    assert trainer.args.nft_method == "sophon"


def test_training_alternates_logs_evaluates_and_saves_a_plain_model(tmp_path, original, restricted):
    model = tiny_resnet()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = NFTTrainer(model=model, args=config(tmp_path), train_dataset=original, eval_dataset=original,
                         restricted_dataset=restricted, restricted_eval_dataset=restricted)
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"fts_loss", "ntr_loss", "loss"} <= logged
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "eval_restricted_loss" in metrics
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "model.safetensors").exists()
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "saved")
    for name, param in reloaded.named_parameters():
        torch.testing.assert_close(param, dict(model.named_parameters())[name])


def test_suppression_step_pushes_restricted_outputs_towards_chance(tmp_path, original, restricted):
    model = tiny_resnet()
    args = config(tmp_path, max_steps=30, fts_steps=1, ntr_steps=0, learning_rate=3e-3, guard_every=0)
    trainer = NFTTrainer(model=model, args=args, train_dataset=original, restricted_dataset=restricted)
    losses = []
    trainer.add_callback(_Recorder(losses, trainer))
    trainer.train()
    assert losses[-1] < losses[0] * 0.7


class _Recorder(__import__("transformers").TrainerCallback):
    def __init__(self, losses, trainer):
        self.losses, self.trainer = losses, trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "fts_loss" in logs:
            self.losses.append(logs["fts_loss"])
