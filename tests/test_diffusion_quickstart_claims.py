"""The full diffusion quickstart writes its outputs and is measured against the diffusion issue's claims (slow: about
15 minutes on one CPU thread).

Run with ``pytest -m slow``; the default test command deselects it. Measured on seeds 0, 1 and 2 (README, "SOPHON
for diffusion models"): the denoising and original-domain claims hold, the samples claim does not (seed 0: 0.766 of
the protected model's samples read as restricted after full fine-tuning, against the bound of 0.5).
"""

import json

import pytest
import torch
from diffusers import DDPMPipeline
from transformers import AutoModelForImageClassification

from hf_nft.diffusion_quickstart import run_diffusion_quickstart

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    output = tmp_path_factory.mktemp("diffusion-quickstart")
    return output, run_diffusion_quickstart(output, progress=False)


def test_full_diffusion_quickstart_writes_its_outputs(quickstart):
    output, result = quickstart
    protected = DDPMPipeline.from_pretrained(output / "protected")
    assert protected.unet.config.sample_size == 16
    AutoModelForImageClassification.from_pretrained(output / "domain_classifier")
    report = json.loads((output / "report.json").read_text())
    assert report["domain_classifier_accuracy"] > 0.95
    for name in ("samples_before_attack.png", "samples_after_full_finetune.png", "samples_after_lora.png",
                 "curves.png", "loss_curves.png"):
        assert (output / name).stat().st_size > 0, name
    assert torch.isfinite(torch.tensor(result.evaluation.report.original["protected"]))


SAMPLES_CLAIM = "full fine-tuning: protected samples restricted at most half as often as unprotected's"


def test_full_diffusion_quickstart_meets_the_denoising_and_original_domain_claims(quickstart):
    _, result = quickstart
    failed = [name for name, holds in result.checks.items() if not holds and name != SAMPLES_CLAIM]
    assert not failed, failed
    assert 0 < result.alternation_end_step <= 500


@pytest.mark.xfail(strict=True, reason="measured: 0.766 vs 1.000 at seed 0 (bound 0.5); see the README")
def test_full_diffusion_quickstart_meets_the_samples_claim(quickstart):
    _, result = quickstart
    assert result.checks[SAMPLES_CLAIM]
