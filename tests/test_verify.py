"""``hf-nft verify``: honest claims re-measure; tampered weights, edited figures and bad input are caught."""

import json
import shutil

import pytest
import yaml
from conftest import tiny_resnet
from hub_server import point_huggingface_hub_at, start
from safetensors.torch import load_file, save_file

from hf_nft import NFTConfig, NFTTrainer, evaluate_protection, load_domain
from hf_nft.attacks.suite import Suite
from hf_nft.cli import main
from hf_nft.hub import CARD_FILE
from hf_nft.metadata import METADATA_FILE, SCHEMA_VERSION
from hf_nft.upload import push_folder
from hf_nft.verify import verify

SUITE = {"name": "tiny", "seeds": [0, 1], "examples_per_class": 2, "defaults": {"steps": 10, "eval_every": 5},
         "attacks": [{"kind": "full_finetune", "learning_rate": 1e-3},
                     {"kind": "linear_probe", "learning_rate": 1e-2, "reset_head": True},
                     {"kind": "lora", "learning_rate": 3e-3, "options": {"rank": 2}},
                     {"kind": "full_finetune", "optimizer": "sgd", "learning_rate": 1e-1}]}


@pytest.fixture(scope="module")
def protected_dir(tmp_path_factory):
    """A tiny digit classifier protected for two steps against uci-digits, attacked, saved with its card."""
    output = tmp_path_factory.mktemp("published")
    original = load_domain("mnist", "train").select(range(64))
    restricted_train, restricted_test = load_domain("uci-digits", "train"), load_domain("uci-digits", "test")
    args = NFTConfig(output_dir=str(output), max_steps=2, inner_steps=1, save_strategy="no", report_to=[],
                     per_device_train_batch_size=16, disable_tqdm=True)
    trainer = NFTTrainer(model=tiny_resnet(num_labels=10), args=args, train_dataset=original,
                         restricted_dataset=restricted_train)
    trainer.train()
    trainer.save_model()
    suite = Suite.from_dict(SUITE)
    original_test = load_domain("mnist", "test")
    report = evaluate_protection(trainer.model, restricted_train, restricted_test, suite=suite,
                                 original_eval=original_test, progress=False)
    report.plot(output / "curves.png")
    metadata = trainer.protection_metadata().with_report(report, suite, restricted_train, restricted_test,
                                                         original_test)
    trainer.create_model_card(model_name="tiny digits", metadata=metadata, plot=str(output / "curves.png"))
    return output


@pytest.fixture
def copy(protected_dir, tmp_path):
    return shutil.copytree(protected_dir, tmp_path / "copy")


def test_honest_claims_pass_in_full(protected_dir):
    result = verify(protected_dir)
    assert result.passed, result.table()
    names = [check.name for check in result.checks]
    assert "weights sha256" in names and "lora/adam/lr=0.003, scratch, seed 1" in names
    assert "full_finetune/sgd/lr=0.1, protected, mean" in names and "original domain, protected" in names


def test_quick_mode_reruns_the_first_seed_of_the_first_three_attacks(protected_dir, capsys):
    assert main(["verify", str(protected_dir), "--attacks", "quick"]) == 0
    output = capsys.readouterr().out
    assert "PASSED" in output and "lora/adam/lr=0.003, protected, seed 0" in output
    assert "seed 1" not in output and "full_finetune/sgd" not in output


def test_one_flipped_weight_fails_naming_the_weights(copy, capsys):
    tensors = load_file(copy / "model.safetensors")
    name = min(tensors)
    tensors[name].view(-1)[0] *= -1
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    assert main(["verify", str(copy), "--attacks", "quick"]) == 1
    output = capsys.readouterr().out
    assert "FAILED" in output and "mismatch(es): weights sha256" in output


def _edit_card(folder, edit):
    text = (folder / CARD_FILE).read_text()
    _, front, body = text.split("---\n", 2)
    data = yaml.safe_load(front)
    edit(data["nft"])
    (folder / CARD_FILE).write_text(f"---\n{yaml.safe_dump(data, sort_keys=False)}---\n{body}")


def test_an_edited_claimed_figure_fails_naming_it(copy, capsys):
    def lower(nft):
        nft["results"]["full_finetune/adam/lr=0.001"]["protected"]["mean"] -= 0.05

    _edit_card(copy, lower)
    assert main(["verify", str(copy), "--attacks", "quick"]) == 1
    output = capsys.readouterr().out
    assert "card vs nft_config.json: results.full_finetune/adam/lr=0.001.protected.mean" in output
    assert "full_finetune/adam/lr=0.001, protected: mean of the claimed seeds" in output
    assert "model-index: hf-nft: restricted-domain accuracy after full_finetune/adam/lr=0.001" in output


def test_a_consistently_forged_figure_is_caught_by_re_measuring(copy):
    claim_path = ["results", "linear_probe/reset/adam/lr=0.01", "protected"]

    def forge(nft):
        claim = nft[claim_path[0]][claim_path[1]][claim_path[2]]
        claim["finals"][0] -= 0.1
        claim["mean"] = sum(claim["finals"]) / 2
        claim["std"] = abs(claim["finals"][0] - claim["finals"][1]) / 2 ** 0.5

    (copy / CARD_FILE).unlink()  # forged in nft_config.json alone, consistently: only re-measuring catches it
    data = json.loads((copy / METADATA_FILE).read_text())
    forge(data)
    (copy / METADATA_FILE).write_text(json.dumps(data))
    result = verify(copy, attacks="quick")
    assert [check.name for check in result.mismatches] == ["linear_probe/reset/adam/lr=0.01, protected, seed 0"]


def test_metadata_from_a_newer_version_warns_and_is_verified(copy):
    (copy / CARD_FILE).unlink()
    data = json.loads((copy / METADATA_FILE).read_text())
    data.update(schema_version=SCHEMA_VERSION + 1, signature="abc")
    (copy / METADATA_FILE).write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="newer"):
        result = verify(copy, attacks="quick")
    assert result.passed, result.table()


@pytest.mark.parametrize(
    ("damage", "message"),
    [("no metadata", "no protection metadata"), ("broken yaml", "YAML front matter is broken"),
     ("no results", "no attack results"), ("custom data", "not an hf_nft.data domain")],
)
def test_bad_input_is_a_clear_error(copy, capsys, damage, message):
    data = json.loads((copy / METADATA_FILE).read_text())
    if damage == "no metadata":
        (copy / METADATA_FILE).unlink()
        (copy / CARD_FILE).unlink()
    elif damage == "broken yaml":
        (copy / CARD_FILE).write_text("---\nnft: {method: [sophon\n---\n# card\n")
    else:
        (copy / CARD_FILE).unlink()
        if damage == "no results":
            data["results"] = {}
        else:
            data["data"]["attack_train"]["domain"] = None
        (copy / METADATA_FILE).write_text(json.dumps(data))
    assert main(["verify", str(copy)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("source", ["no/such/folder/here", "bad repo id!"])
def test_an_invalid_source_is_a_clear_error(source):
    with pytest.raises(ValueError, match="is not a folder. Invalid repo id"):
        verify(source)


def test_verify_a_pushed_repository(protected_dir, monkeypatch, tmp_path):
    server, _ = start("token")
    try:
        point_huggingface_hub_at(monkeypatch, server, "token", str(tmp_path / "cache"))
        push_folder(protected_dir, "me/tiny-digits")
        assert verify("me/tiny-digits", attacks="quick").passed
        with pytest.raises(ValueError, match="Cannot download 'me/missing'"):
            verify("me/missing")
    finally:
        server.shutdown()
