import math

import pytest
import torch

from hf_nft.losses import inverse_cross_entropy, kl_uniform


def test_inverse_ce_matches_hand_computation():
    logits = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]])
    # true class 0 has p = 0.7 -> -log(1 - 0.7)
    assert inverse_cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(-math.log(0.3), rel=1e-5)
    assert inverse_cross_entropy(logits, torch.tensor([2])).item() == pytest.approx(-math.log(0.9), rel=1e-5)


def test_inverse_ce_is_bounded_and_stable_for_confident_logits():
    logits = torch.tensor([[50.0, -50.0, -50.0]])
    wrong = inverse_cross_entropy(logits, torch.tensor([1]))
    right = inverse_cross_entropy(logits, torch.tensor([0]))
    assert wrong.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(right) and right.item() > 40


def test_kl_uniform_matches_hand_computation_for_any_label_count():
    probs = torch.tensor([[0.5, 0.25, 0.25]])
    expected = sum((1 / 3) * (math.log(1 / 3) - math.log(p)) for p in probs[0].tolist())
    assert kl_uniform(probs.log()).item() == pytest.approx(expected, rel=1e-5)
    assert kl_uniform(torch.zeros(2, 7)).item() == pytest.approx(0.0, abs=1e-6)  # uniform over 7, not 0.1


def test_losses_average_over_the_batch():
    logits = torch.tensor([[math.log(0.7), math.log(0.3)], [math.log(0.4), math.log(0.6)]])
    labels = torch.tensor([0, 0])
    assert inverse_cross_entropy(logits, labels).item() == pytest.approx(
        (-math.log(0.3) - math.log(0.6)) / 2, rel=1e-5)
