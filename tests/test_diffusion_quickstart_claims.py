"""The full diffusion quickstart meets the diffusion issue's claims (slow: about 12-15 minutes on one CPU thread).

Run with ``pytest -m slow``; the default test command deselects it.
"""

import json

import pytest
import torch
from diffusers import DDPMPipeline
from transformers import AutoModelForImageClassification

from hf_nft.diffusion_quickstart import run_diffusion_quickstart


@pytest.mark.slow
def test_full_diffusion_quickstart_meets_every_claim(tmp_path):
    result = run_diffusion_quickstart(tmp_path, progress=False)
    protected = DDPMPipeline.from_pretrained(tmp_path / "protected")
    assert protected.unet.config.sample_size == 16
    AutoModelForImageClassification.from_pretrained(tmp_path / "domain_classifier")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["domain_classifier_accuracy"] > 0.95
    for name in ("samples_before_attack.png", "samples_after_full_finetune.png", "samples_after_lora.png",
                 "curves.png", "loss_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert torch.isfinite(torch.tensor(result.evaluation.report.original["protected"]))
    failed = [name for name, holds in result.checks.items() if not holds]
    assert not failed, failed
