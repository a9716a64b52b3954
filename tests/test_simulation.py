import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from hf_nft.losses import kl_uniform
from hf_nft.methods._simulation import AdversaryPool, AdversaryStrategy, FineTuningSimulation, slice_batch
from hf_nft.modeling import fresh_layer_parameters
from hf_nft.optimizers import build_optimizer

from conftest import image_dataset, tiny_resnet


def batches(n_batches: int, size: int = 12, seed: int = 0):
    data = image_dataset(size * n_batches, seed=seed)
    return [{"pixel_values": data[i * size:(i + 1) * size]["pixel_values"],
             "labels": data[i * size:(i + 1) * size]["labels"]} for i in range(n_batches)]


def cross_entropy(forward, batch):
    return F.cross_entropy(forward(batch).logits, batch["labels"])


def suppression(forward, batch):
    return kl_uniform(forward(batch).logits)


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop", "adagrad"])
def test_inner_steps_match_the_named_torch_optimizer(optimizer):
    model = tiny_resnet()
    stream = batches(4)
    strategy = AdversaryStrategy(optimizer, 0.05, batch_size=8, reset_head=False)
    result = FineTuningSimulation(model, cross_entropy, suppression).run(
        strategy, iter(stream), steps=3, query_size=4)

    reference = copy.deepcopy(model).train()
    torch_optimizer = build_optimizer(optimizer, reference.parameters(), 0.05)
    for batch in stream[:3]:
        support = slice_batch(batch, 0, 8)
        loss = F.cross_entropy(reference(pixel_values=support["pixel_values"]).logits, support["labels"])
        torch_optimizer.zero_grad()
        loss.backward()
        torch_optimizer.step()
    for name, param in reference.named_parameters():
        torch.testing.assert_close(result.adapted_parameters[name], param.detach(), rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(result.adapted_parameters[n], p) for n, p in model.named_parameters())


def test_simulation_never_touches_the_model_weights_or_batchnorm_statistics():
    model = tiny_resnet()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    strategy = AdversaryStrategy("adam", 0.1, batch_size=8, reset_head=True)
    FineTuningSimulation(model, cross_entropy, suppression).run(strategy, iter(batches(6)), steps=4, query_size=4)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_meta_gradient_at_the_start_is_the_suppression_gradient_of_the_released_weights():
    model = tiny_resnet()
    stream = batches(1)
    result = FineTuningSimulation(model, cross_entropy, suppression).run(
        AdversaryStrategy("sgd", 0.1, batch_size=8, reset_head=False), iter(stream), steps=0, query_size=4)
    model.eval()
    query = slice_batch(stream[0], 8, 12)
    loss = kl_uniform(model(pixel_values=query["pixel_values"]).logits)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    for (name, _), grad in zip(model.named_parameters(), expected):
        torch.testing.assert_close(result.meta_gradients[name], grad)
    assert result.suppression_losses == [pytest.approx(loss.item(), rel=1e-5)]


def test_meta_gradient_averages_every_point_of_the_trajectory_and_reaches_all_weights():
    model = tiny_resnet()
    result = FineTuningSimulation(model, cross_entropy, suppression).run(
        AdversaryStrategy("sgd", 0.1, batch_size=8, reset_head=False), iter(batches(5)), steps=3, query_size=4)
    assert len(result.suppression_losses) == 4  # start + 3 steps
    assert len(result.adversary_losses) == 3
    for name, param in model.named_parameters():
        assert result.meta_gradients[name].shape == param.shape
        assert result.meta_gradients[name].abs().sum() > 0, name


def test_head_reset_keeps_post_reset_gradients_off_the_released_head():
    model = tiny_resnet()
    reset = FineTuningSimulation(model, cross_entropy, suppression).run(
        AdversaryStrategy("sgd", 0.1, batch_size=8, reset_head=True), iter(batches(6)), steps=2, query_size=4,
        generator=torch.Generator().manual_seed(0))
    # released-weights term + start-after-reset + 2 steps
    assert len(reset.suppression_losses) == 4
    head_weight = "classifier.1.weight"
    assert not torch.equal(reset.adapted_parameters[head_weight], dict(model.named_parameters())[head_weight])


def test_adversary_pool_samples_every_entry_and_respects_probabilities():
    pool = AdversaryPool(["sgd:0.1", "adam:0.001"], [8, 16], head_reset_probability=0.0, seed=0)
    draws = [pool.sample() for _ in range(200)]
    assert {(d.optimizer, d.learning_rate) for d in draws} == {("sgd", 0.1), ("adam", 0.001)}
    assert {d.batch_size for d in draws} == {8, 16}
    assert not any(d.reset_head for d in draws)
    always = AdversaryPool(["sgd:0.1"], [8], head_reset_probability=1.0)
    assert all(always.sample().reset_head for _ in itertools.repeat(None, 20))


def test_fresh_layer_parameters_draw_like_reset_parameters_and_reject_other_layers():
    generator = torch.Generator().manual_seed(0)
    linear = fresh_layer_parameters("head", torch.nn.Linear(16, 3), generator)
    assert set(linear) == {"head.weight", "head.bias"}
    assert float(linear["head.weight"].abs().max()) <= 1 / 16**0.5
    conv = fresh_layer_parameters("out", torch.nn.Conv2d(8, 1, 3), generator)
    assert conv["out.weight"].shape == (1, 8, 3, 3)
    assert 0.8 / 72**0.5 < float(conv["out.weight"].abs().max()) <= 1 / 72**0.5  # fan_in = 8 * 3 * 3
    norm = torch.nn.GroupNorm(2, 8)
    with torch.no_grad():
        norm.weight.mul_(5)
    fresh = fresh_layer_parameters("norm", norm)
    assert torch.equal(fresh["norm.weight"], torch.ones(8)) and torch.equal(fresh["norm.bias"], torch.zeros(8))
    assert fresh_layer_parameters("norm", torch.nn.GroupNorm(2, 8, affine=False)) == {}
    with pytest.raises(ValueError, match="not a linear, convolution or norm layer"):
        fresh_layer_parameters("embed", torch.nn.Embedding(4, 2))
