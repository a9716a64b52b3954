"""Named domains: shapes, deterministic splits, resampling renderings and bad names."""

import pytest
import torch

from hf_nft.data import available_domains, load_domain, num_labels


@pytest.mark.parametrize("name", ["mnist", "uci-digits"])
def test_domains_share_one_image_shape_and_split_deterministically(name):
    train, test = load_domain(name, "train"), load_domain(name, "test")
    assert train[0]["pixel_values"].shape == (1, 16, 16) and num_labels(train) == 10
    pixels = train[:]["pixel_values"]
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert len(train) > 2 * len(test)
    assert torch.equal(load_domain(name, "test")[:]["pixel_values"], test[:]["pixel_values"])


def test_uci_digits_rendered_blocky_by_default_and_smoothly_on_request():
    blocky = load_domain("uci-digits", "test")[:]["pixel_values"]
    smooth = load_domain("uci-digits", "test", resample="bilinear")[:]["pixel_values"]
    # nearest upsampling of 8x8 images: every 2x2 block is constant; bilinear is not
    assert torch.equal(blocky[..., ::2, :], blocky[..., 1::2, :])
    assert not torch.equal(smooth[..., ::2, :], smooth[..., 1::2, :])
    # the same digits: at 8x8 the two renderings are far closer to each other than to other digits
    pooled = [torch.nn.functional.avg_pool2d(images, 2) for images in (blocky, smooth)]
    same = (pooled[0] - pooled[1]).abs().mean()
    other = (pooled[0] - pooled[1].roll(1, dims=0)).abs().mean()
    assert same < 0.5 * other


def test_bad_names_are_named():
    with pytest.raises(ValueError, match="Did you mean 'mnist'"):
        load_domain("minst")
    with pytest.raises(ValueError, match="Unknown split"):
        load_domain("mnist", "validation")
    with pytest.raises(ValueError, match="Unknown resample mode"):
        load_domain("mnist", resample="lanczos")
    assert {"mnist", "uci-digits"} <= set(available_domains())
