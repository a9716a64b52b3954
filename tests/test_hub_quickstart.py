"""The quickstart publishes a card whose claims are its report's, and which verifies (slow: about a minute)."""

import pytest
from huggingface_hub import ModelCard

from hf_nft.cli import main
from hf_nft.evaluation.report import ProtectionReport
from hf_nft.metadata import NFTMetadata


@pytest.mark.slow
def test_quickstart_card_claims_equal_the_report_and_verify(tmp_path):
    assert main(["quickstart", "--fast", "--output", str(tmp_path), "--no-progress"]) == 0
    card = ModelCard.load(tmp_path / "protected" / "README.md")
    metadata = NFTMetadata.from_dict(card.data.nft)
    assert metadata == NFTMetadata.load(tmp_path / "protected")
    report = ProtectionReport.from_json(tmp_path / "report.json")
    assert metadata.original == report.original and metadata.before == report.before
    assert {name: {role: claim.finals for role, claim in by_role.items()} for name, by_role in metadata.results.items()} \
        == {name: {role: o.finals for role, o in by_role.items()} for name, by_role in report.results.items()}
    assert "](curves.png)" in card.text and (tmp_path / "protected" / "curves.png").is_file()
    assert main(["verify", str(tmp_path / "protected"), "--attacks", "quick"]) == 0
