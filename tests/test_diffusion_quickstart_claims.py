"""The full diffusion quickstart writes its outputs and meets the diffusion issue's claims (slow: about 25 minutes on
one CPU thread).

Run with ``pytest -m slow``; the default test command deselects it. Measured on seeds 0, 1 and 2 (README, "SOPHON
for diffusion models"); seed 0: original-domain MSE +4.4%, restricted MSE after full fine-tuning 0.122 against
scratch's 0.085, 0.281 of the protected model's samples read as restricted against the unprotected model's 1.000
(one thread). Seeds 1 and 2 hold them too (seed 1's samples narrowly: 0.469 against a limit of 0.5).
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


def test_full_diffusion_quickstart_meets_the_issue_claims(quickstart):
    _, result = quickstart
    assert len(result.checks) == 4
    failed = [name for name, holds in result.checks.items() if not holds]
    assert not failed, failed
    assert 0 < result.alternation_end_step <= 500
    # The protection was maintained during the repair, never in its last 50 steps.
    assert result.repair_fts_steps and all(
        result.alternation_end_step <= step < 1400 - 50 for step in result.repair_fts_steps)
