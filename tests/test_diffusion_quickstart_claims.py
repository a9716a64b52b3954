"""The full diffusion quickstart writes its outputs and is measured against the diffusion issue's claims (slow: about
12-15 minutes on one CPU thread).

Run with ``pytest -m slow``; the default test command deselects it. The original-domain claim holds at the default
settings but the fine-tuning and sample claims do not (README, "SOPHON for diffusion models"): that test is an
expected failure until they do.
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


@pytest.mark.xfail(reason="after full fine-tuning the protected model is not below scratch and its samples are not "
                   "half as often restricted as the unprotected model's (see README)", strict=True)
def test_full_diffusion_quickstart_meets_every_claim(quickstart):
    _, result = quickstart
    failed = [name for name, holds in result.checks.items() if not holds]
    assert not failed, failed
