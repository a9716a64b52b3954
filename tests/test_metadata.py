"""Protection metadata: weights and data fingerprints, the versioned schema and its JSON round-trip."""

import json

import pytest
import torch
from conftest import image_dataset, tiny_resnet
from safetensors.torch import load_file, save_file

from hf_nft.attacks.spec import AttackSpec
from hf_nft.attacks.suite import Suite
from hf_nft.data import load_domain, load_renderings
from hf_nft.evaluation.report import Outcome, ProtectionReport
from hf_nft.fingerprints import dataset_fingerprint, weights_sha256
from hf_nft.metadata import METADATA_FILE, SCHEMA_VERSION, Claim, DataRecord, NFTMetadata

ATTACKS = [AttackSpec(kind="full_finetune", steps=10), AttackSpec(kind="linear_probe", reset_head=True, steps=10)]


def synthetic_report() -> ProtectionReport:
    """A report with made-up figures for two attacks and three roles, two seeds each."""
    results = {}
    for offset, spec in enumerate(ATTACKS):
        outcome = {key: value for key, value in spec.to_dict().items() if key != "seed"}
        results[spec.name] = {
            role: Outcome(spec=outcome, seeds=[0, 1], steps=[0, 10], values=[[0.1, base + offset / 10], [0.1, base]])
            for role, base in (("protected", 0.2), ("unprotected", 0.7), ("scratch", 0.4))
        }
    return ProtectionReport(suite="test", metric="accuracy", higher_is_better=True,
                            original={"protected": 0.9, "unprotected": 0.91, "scratch": 0.1},
                            before={"protected": 0.05, "unprotected": 0.6, "scratch": 0.1}, results=results)


def synthetic_metadata() -> NFTMetadata:
    base = NFTMetadata(method="sophon", settings={"method": "sophon", "inner_steps": 2}, original_domain="mnist",
                       restricted_domains=["uci-digits"])
    data = image_dataset(8)
    return base.with_report(synthetic_report(), Suite("test", ATTACKS, [0, 1]), data, data, data)


def test_weights_hash_ignores_file_layout_and_sees_one_flipped_weight(tmp_path):
    model = tiny_resnet()
    model.save_pretrained(tmp_path / "one")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    assert weights_sha256(tmp_path / "one") == weights_sha256(tmp_path / "sharded")
    tensors = load_file(tmp_path / "one" / "model.safetensors")
    name = sorted(tensors)[3]
    tensors[name].view(-1)[0] += 1e-3
    save_file(tensors, tmp_path / "one" / "model.safetensors", metadata={"format": "pt"})
    assert weights_sha256(tmp_path / "one") != weights_sha256(tmp_path / "sharded")
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        weights_sha256(tmp_path)


def test_data_records_name_hf_nft_domains_and_fingerprint_their_content():
    record = DataRecord.of(load_domain("uci-digits", "test"))
    assert (record.domain, record.split, record.resample, record.size) == ("uci-digits", "test", "nearest", 450)
    both = DataRecord.of(load_renderings("uci-digits", "test", ("nearest", "bilinear")))
    assert both.resample == "nearest+bilinear" and both.size == 900 and both.fingerprint != record.fingerprint
    custom = image_dataset(8)
    assert DataRecord.of(custom).domain is None
    assert dataset_fingerprint(custom) == dataset_fingerprint(image_dataset(8))
    assert dataset_fingerprint(custom) != dataset_fingerprint(image_dataset(8, seed=5))
    assert DataRecord.of([torch.zeros(1)] * 3) == DataRecord(size=3, fingerprint="")


def test_metadata_holds_the_report_figures_and_round_trips_through_json(tmp_path):
    metadata = synthetic_metadata()
    report = synthetic_report()
    for name, outcomes in report.results.items():
        for role, outcome in outcomes.items():
            claim = metadata.results[name][role]
            assert claim.finals == outcome.finals
            assert claim.mean == pytest.approx(outcome.final_mean) and claim.std == pytest.approx(outcome.final_std)
    assert metadata.original == report.original and metadata.before == report.before
    assert metadata.suite["seeds"] == [0, 1] and metadata.suite["attacks"][0]["steps"] == 10
    assert metadata.versions["torch"] == torch.__version__
    path = metadata.save(tmp_path)
    assert path.name == METADATA_FILE and NFTMetadata.load(tmp_path) == metadata
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary file


def test_with_report_rejects_a_suite_that_did_not_produce_the_report():
    base = NFTMetadata(method="sophon", settings={}, original_domain=None, restricted_domains=[])
    data = image_dataset(8)
    with pytest.raises(ValueError, match="not the report's"):
        base.with_report(synthetic_report(), Suite("other", ATTACKS[:1], [0]), data, data)


def test_metadata_from_a_newer_version_warns_and_loads_what_it_knows(tmp_path):
    data = synthetic_metadata().to_dict()
    data.update(schema_version=SCHEMA_VERSION + 1, watermark={"key": 1})
    (tmp_path / METADATA_FILE).write_text(json.dumps(data))
    with pytest.warns(UserWarning) as caught:
        loaded = NFTMetadata.load(tmp_path)
    messages = " ".join(str(warning.message) for warning in caught)
    assert "newer" in messages and "watermark" in messages
    assert loaded.results == synthetic_metadata().results and loaded.schema_version == SCHEMA_VERSION + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no protection metadata"), ("{not json", "not readable JSON"), ("[1, 2]", "expected a mapping"),
     (json.dumps({"method": "sophon"}), "missing required keys"),
     (json.dumps({"method": "m", "settings": {}, "original_domain": None, "restricted_domains": [],
                  "results": {"a": {"protected": {"mean": 1}}}}), "malformed")],
)
def test_bad_metadata_files_are_named_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / METADATA_FILE).write_text(content)
    with pytest.raises(ValueError, match=message):
        NFTMetadata.load(tmp_path)


def test_claims_of_one_seed_have_zero_spread():
    assert Claim.of([0.5]) == Claim(mean=0.5, std=0.0, finals=[0.5])
