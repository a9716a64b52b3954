"""End-to-end: the fast quickstart protects, attacks and reports on the real digit domains."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForImageClassification

from hf_nft.cli import main
from hf_nft.evaluation.report import ProtectionReport

ORIGINAL_TOLERANCE = 0.06  # the fast run trains briefly; the full quickstart is held to 3 points


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory):
    output = tmp_path_factory.mktemp("quickstart")
    assert main(["quickstart", "--fast", "--output", str(output), "--no-progress"]) == 0
    return output


def test_protected_model_is_worse_on_the_restricted_domain_after_the_same_attacks(quickstart_dir):
    report = ProtectionReport.from_json(quickstart_dir / "report.json")
    assert report.original["protected"] >= report.original["unprotected"] - ORIGINAL_TOLERANCE
    assert report.before["protected"] < report.before["unprotected"]
    protected = [outcomes["protected"].final_mean for outcomes in report.results.values()]
    unprotected = [outcomes["unprotected"].final_mean for outcomes in report.results.values()]
    assert sum(protected) / len(protected) < sum(unprotected) / len(unprotected)
    probe = next(name for name in report.results if name.startswith("linear_probe"))
    assert report.results[probe]["protected"].final_mean < report.results[probe]["unprotected"].final_mean


def test_outputs_are_a_plain_transformers_model_a_card_and_a_plot(quickstart_dir):
    model = AutoModelForImageClassification.from_pretrained(quickstart_dir / "protected")
    assert model(pixel_values=torch.zeros(2, 1, 16, 16)).logits.shape == (2, 10)
    card = ModelCard.load(quickstart_dir / "protected" / "README.md")
    assert "hf-nft" in card.data.tags and card.data.nft["method"] == "sophon"
    assert card.data.nft["restricted_domains"] == ["uci-digits"]
    assert "Limitations" in card.text
    assert (quickstart_dir / "curves.png").stat().st_size > 1000
    timings = json.loads((quickstart_dir / "timings.json").read_text())
    assert timings["seconds"]["total"] > 0 and timings["checks"]


def test_quickstart_rejects_a_thread_count_below_one(tmp_path):
    with pytest.raises(SystemExit, match="--threads must be at least 1"):
        main(["quickstart", "--threads", "0", "--output", str(tmp_path)])
    assert not any(tmp_path.iterdir())
