"""The collapse guard rolls back to the last good weights and stops training when the original task collapses."""

import torch
from conftest import image_dataset, tiny_resnet
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_nft.guard import OriginalTaskGuard


def _trained_model(data):
    model = tiny_resnet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = data[:]
    for _ in range(60):
        loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_guard_keeps_good_steps_and_restores_them_after_a_collapse(tmp_path):
    data = image_dataset(64, seed=1)
    model = _trained_model(data)
    guard = OriginalTaskGuard(data, every=1, tolerance=0.2)
    args, state = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerState()
    guard.on_train_begin(args, state, TrainerControl(), model=model)
    assert guard.baseline > 0.9

    state.global_step = 1
    control = guard.on_step_end(args, state, TrainerControl(), model=model)
    assert not control.should_training_stop and guard.tripped_at is None
    good = {name: value.clone() for name, value in model.state_dict().items()}

    with torch.no_grad():  # the original task collapses: every input gets the same class
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    state.global_step = 2
    control = guard.on_step_end(args, state, TrainerControl(), model=model)
    assert control.should_training_stop and guard.tripped_at == 2
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, good[name])
    assert state.log_history[-1]["guard_original_accuracy"] < guard.baseline - 0.2
