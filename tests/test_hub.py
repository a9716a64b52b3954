"""Model cards (pure rendering, updating, atomic saving) and pushing through HfApi to a local Hub stand-in."""

import pytest
import yaml
from conftest import tiny_resnet
from hub_server import point_huggingface_hub_at, start
from huggingface_hub import EvalResult, ModelCard, hf_hub_download
from test_metadata import ATTACKS, synthetic_metadata, synthetic_report
from transformers import AutoModelForImageClassification

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.attacks.suite import Suite
from hf_nft.cli import main
from hf_nft.fingerprints import weights_sha256
from hf_nft.hub import CARD_FILE, render_model_card, save_protected_model_files, update_model_card
from hf_nft.metadata import METADATA_FILE, NFTMetadata
from hf_nft.upload import push_folder

TOKEN = "hf_test_token"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A Hub stand-in on 127.0.0.1 (tests/hub_server.py), with huggingface_hub pointed at it."""
    server, state = start(TOKEN)
    point_huggingface_hub_at(monkeypatch, server, TOKEN, str(tmp_path / "hub-cache"))
    yield state
    server.shutdown()


@pytest.fixture
def published(tmp_path):
    """A model folder with weights, a training leftover, a checkpoint, and hf_nft's metadata, card and plot."""
    folder = tmp_path / "model"
    tiny_resnet(num_labels=4).save_pretrained(folder)
    (folder / "training_args.bin").write_bytes(b"not for the hub")
    tiny_resnet(num_labels=4, seed=1).save_pretrained(folder / "checkpoint-1")
    (tmp_path / "curves.png").write_bytes(b"\x89PNG fake plot")
    save_protected_model_files(folder, synthetic_metadata(), model_name="tiny", plot=tmp_path / "curves.png")
    return folder


def test_rendered_card_has_library_metadata_claims_and_a_readable_body():
    metadata = synthetic_metadata()
    card = render_model_card(metadata, model_name="tiny", plot_file="curves.png", reproduce_command="make it")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    assert card.data.tags == ["hf-nft", "non-fine-tunable", "sophon"]
    assert NFTMetadata.from_dict(card.data.nft) == metadata
    reloaded = ModelCard(str(card))  # through the YAML text
    assert NFTMetadata.from_dict(reloaded.data.nft) == metadata
    values = {r.metric_name: r.metric_value for r in reloaded.data.eval_results}
    assert values["hf-nft: original-domain accuracy"] == 0.9
    for name, by_role in metadata.results.items():
        assert values[f"hf-nft: restricted-domain accuracy after {name} (lower is better)"] == by_role["protected"].mean
        assert f"| {name} | 10 steps, batch 16, all data | {by_role['protected'].mean:.3f} ±" in card.text
    assert "![Restricted-domain accuracy during each attack](curves.png)" in card.text
    assert "make it" in card.text and "### Limitations" in card.text and "empirical" in card.text
    assert metadata.weights_sha256 == "" and "(not recorded)" in card.text


def test_a_card_without_results_says_the_protection_is_unmeasured():
    metadata = NFTMetadata(method="sophon", settings={}, original_domain="mnist", restricted_domains=["uci-digits"])
    card = render_model_card(metadata, model_name="fresh")
    assert "not been measured" in card.text and "Attack results" not in card.text
    assert card.data.eval_results is None


def test_updating_a_card_keeps_what_its_author_wrote():
    first = synthetic_metadata()
    user = EvalResult(task_type="image-classification", dataset_type="svhn", dataset_name="svhn", metric_type="f1",
                      metric_value=0.5)
    existing = render_model_card(first, model_name="tiny")
    existing.data.license = "mit"
    existing.data.tags.append("digits")
    existing.data.eval_results.append(user)
    existing.text = "# My model\n\nIntro by the author.\n\n" + existing.text.split("# tiny\n", 1)[1] + "\nThanks!\n"
    second = NFTMetadata.from_dict({**first.to_dict(), "method": "other"})
    updated = update_model_card(ModelCard(str(existing)), render_model_card(second, model_name="tiny"))
    again = update_model_card(updated, render_model_card(second, model_name="tiny"))
    assert str(again) == str(updated)  # idempotent: hf_nft's section is replaced, never duplicated
    assert updated.text.startswith("# My model\n\nIntro by the author.") and updated.text.endswith("Thanks!\n")
    assert updated.text.count("<!-- hf-nft:begin") == 1 and "method `other`" in updated.text
    assert updated.data.license == "mit" and "digits" in updated.data.tags and "other" in updated.data.tags
    assert user in updated.data.eval_results and len(updated.data.eval_results) == 1 + 3
    assert updated.data.nft["method"] == "other"
    plain = update_model_card(ModelCard("---\nlicense: mit\n---\n# Mine\n"), render_model_card(second, model_name="x"))
    assert plain.text.startswith("# Mine\n") and "<!-- hf-nft:end -->" in plain.text


def test_saved_files_describe_the_weights_beside_them(published):
    metadata = NFTMetadata.load(published)
    assert metadata.weights_sha256 == weights_sha256(published)
    card = ModelCard.load(published / CARD_FILE)
    assert NFTMetadata.from_dict(card.data.nft) == metadata
    assert (published / "curves.png").read_bytes() == b"\x89PNG fake plot"


def test_a_broken_card_is_reported_and_nothing_is_written(tmp_path):
    tiny_resnet().save_pretrained(tmp_path)
    broken = "---\nlicense: [mit\n---\n# Mine\n"
    (tmp_path / CARD_FILE).write_text(broken)
    with pytest.raises(ValueError, match="YAML front matter is broken"):
        save_protected_model_files(tmp_path, synthetic_metadata(), model_name="x")
    assert (tmp_path / CARD_FILE).read_text() == broken and not (tmp_path / METADATA_FILE).exists()


def test_trainer_saves_metadata_with_the_model_and_every_checkpoint(tmp_path, original, restricted):
    args = NFTConfig(output_dir=str(tmp_path), max_steps=2, inner_steps=1, save_strategy="steps", save_steps=1,
                     report_to=[], per_device_train_batch_size=8, disable_tqdm=True)
    trainer = NFTTrainer(model=tiny_resnet(), args=args, train_dataset=original, restricted_dataset=restricted)
    trainer.train()
    trainer.save_model()
    for folder in (tmp_path, tmp_path / "checkpoint-1", tmp_path / "checkpoint-2"):
        metadata = NFTMetadata.load(folder)
        assert metadata.weights_sha256 == weights_sha256(folder)
        assert metadata.method == "sophon" and metadata.settings == trainer.method.settings()
        assert metadata.data["protection_restricted"].fingerprint == NFTMetadata.load(tmp_path).data[
            "protection_restricted"].fingerprint
    assert metadata.results == {} and metadata.data["protection_original"].size == len(original)
    assert weights_sha256(tmp_path / "checkpoint-1") != weights_sha256(tmp_path)


def test_trainer_pushes_only_publishable_files_and_they_load_back(hub, tmp_path, original, restricted):
    args = NFTConfig(output_dir=str(tmp_path / "out"), max_steps=1, inner_steps=1, save_strategy="no", report_to=[],
                     per_device_train_batch_size=8, disable_tqdm=True, hub_model_id="protected-tiny")
    trainer = NFTTrainer(model=tiny_resnet(), args=args, train_dataset=original, restricted_dataset=restricted)
    trainer.train()
    metadata = trainer.protection_metadata().with_report(synthetic_report(), Suite("test", ATTACKS, [0, 1]),
                                                         restricted, restricted)
    commit = trainer.push_to_hub(metadata=metadata, model_name="protected tiny")
    repo = "tester/protected-tiny"
    assert commit.repo_url.repo_id == repo
    files = hub.repos[repo].branches["main"][1]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "nft_config.json"]
    card = ModelCard.load(repo)
    assert card.data.nft["results"] == NFTMetadata.load(tmp_path / "out").to_dict()["results"]
    loaded = AutoModelForImageClassification.from_pretrained(repo)
    assert loaded.config.num_labels == 4 and weights_sha256(tmp_path / "out") == card.data.nft["weights_sha256"]


def test_push_command_uploads_to_a_private_branch(hub, published, capsys):
    assert main(["push", str(published), "me/protected", "--private", "--revision", "v1"]) == 0
    repo = hub.repos["me/protected"]
    assert repo.private and sorted(repo.branches["v1"][1]) == [
        "README.md", "config.json", "curves.png", "model.safetensors", "nft_config.json"]
    assert repo.branches["main"][1] == {}
    card_path = hf_hub_download("me/protected", CARD_FILE, revision="v1")
    assert ModelCard.load(card_path).data.nft == NFTMetadata.load(published).to_dict()
    assert "Pushed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "repo_id", "message"),
    [(None, "not a/valid/repo", "Invalid repo id"), ("metadata", "me/x", "no protection metadata"),
     ("card", "me/x", "no README.md"), ("weights", "me/x", "do not match the hash"),
     ("token", "me/x", "401")],
)
def test_push_refuses_bad_input_before_uploading(hub, published, monkeypatch, capsys, change, repo_id, message):
    if change == "metadata":
        (published / METADATA_FILE).unlink()
    elif change == "card":
        (published / CARD_FILE).unlink()
    elif change == "weights":
        tiny_resnet(seed=3).save_pretrained(published)
    elif change == "token":
        monkeypatch.setenv("HF_TOKEN", "wrong")
    assert main(["push", str(published), repo_id]) == 2
    assert message in capsys.readouterr().err
    assert all(not any(files for _, files in repo.branches.values()) for repo in hub.repos.values())


def test_push_folder_validates_the_repo_id_first(tmp_path):
    with pytest.raises(ValueError, match="Invalid repo id"):
        push_folder(tmp_path, "bad id!")


def test_template_front_matter_is_only_the_card_data():
    card = render_model_card(synthetic_metadata(), model_name="tiny")
    front = str(card).split("---\n")[1]
    assert set(yaml.safe_load(front)) == {"library_name", "pipeline_tag", "tags", "nft", "model-index"}
