"""AttackEvalCallback: periodic attacks logged through the Trainer, without disturbing training."""

from __future__ import annotations

import pytest
import torch
from test_attacks import digits, tiny_resnet  # noqa: F401 (fixture)
from transformers import Trainer, TrainingArguments

from hf_nft.attacks.spec import AttackSpec
from hf_nft.callbacks import AttackEvalCallback
from hf_nft.data import load_domain, per_class_subset

torch.set_num_threads(1)
KEY = "attack/full_finetune/adam/lr=0.001/accuracy"


def train(tmp_path, callback: AttackEvalCallback | None, attach: bool) -> Trainer:
    args = TrainingArguments(str(tmp_path), max_steps=4, per_device_train_batch_size=8, learning_rate=1e-2,
                             logging_steps=2, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                             seed=0)
    trainer = Trainer(model=tiny_resnet(), args=args, train_dataset=per_class_subset(load_domain("mnist"), 4),
                      callbacks=[callback] if callback else None)
    if attach:
        callback.trainer = trainer
    trainer.train()
    return trainer


@pytest.mark.parametrize("attach", [True, False])
def test_attack_metric_is_logged_and_training_is_undisturbed(tmp_path, digits, attach):  # noqa: F811
    spec = AttackSpec(kind="full_finetune", steps=3, eval_every=3, examples_per_class=2)
    callback = AttackEvalCallback(*digits, attacks=spec, every_n_steps=2)
    trainer = train(tmp_path, callback, attach)
    attacks = [entry for entry in trainer.state.log_history if KEY in entry]
    assert [entry["step"] for entry in attacks] == [2, 4]
    assert all(0.0 <= entry[KEY] <= 1.0 for entry in attacks)
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == [2, 4]
    plain = train(tmp_path, None, False)
    for a, b in zip(trainer.model.parameters(), plain.model.parameters()):
        assert torch.equal(a, b)  # the attacks neither changed the model nor the Trainer's randomness


def test_callback_rejects_bad_settings(digits):  # noqa: F811
    with pytest.raises(ValueError, match="every_n_steps must be positive"):
        AttackEvalCallback(*digits, every_n_steps=0)
    with pytest.raises(ValueError, match="data budget"):
        AttackEvalCallback(*digits, examples_per_class=0)
