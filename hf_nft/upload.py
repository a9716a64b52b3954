"""Publishing a protected model folder to the Hugging Face Hub, and fetching one back, through ``HfApi``.

The endpoint and the token are huggingface_hub's own (``HF_ENDPOINT``, ``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from hf_nft.fingerprints import weights_sha256
from hf_nft.hub import CARD_FILE, load_card
from hf_nft.metadata import METADATA_FILE, NFTMetadata

# What goes up: weights (safetensors only), the model config, processor/tokenizer files, the protection
# metadata, the card and its plots; only files at the top of the folder (no checkpoints, no training state).
PUSH_PATTERNS = [
    "*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json",
    "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    METADATA_FILE, CARD_FILE, "*.png",
]
SUBFOLDERS = ["*/*"]


def check_repo_id(repo_id: str) -> None:
    """A ``ValueError`` naming the problem unless ``repo_id`` is a valid Hub repository id."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid repo id {repo_id!r}: {error}") from error


def check_publishable(folder: str | Path) -> NFTMetadata:
    """The folder's metadata, after checking it has weights, a card, and metadata that describes its weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    metadata = NFTMetadata.load(folder)
    if not (folder / CARD_FILE).is_file():
        raise ValueError(f"{folder}: no {CARD_FILE} model card (NFTTrainer.create_model_card writes one).")
    load_card(folder / CARD_FILE)
    if metadata.weights_sha256 != weights_sha256(folder):
        raise ValueError(f"{folder}: the weights do not match the hash in {METADATA_FILE}; the card would describe "
                         "other weights. Re-create the card (NFTTrainer.create_model_card) before pushing.")
    return metadata


def push_folder(folder: str | Path, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                token: str | None = None, commit_message: str = "Upload protected model (hf_nft)",
                run_as_future: bool = False) -> Any:
    """Create ``repo_id`` if needed (and branch ``revision``) and upload the publishable files of ``folder``
    (see :data:`PUSH_PATTERNS`) in one commit; returns ``HfApi.upload_folder``'s commit info (or future)."""
    check_repo_id(repo_id)
    check_publishable(folder)
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo.repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(repo_id=repo.repo_id, folder_path=folder, revision=revision,
                             allow_patterns=PUSH_PATTERNS, ignore_patterns=SUBFOLDERS,
                             commit_message=commit_message, run_as_future=run_as_future)


def local_model_folder(source: str | Path, revision: str | None = None) -> Path:
    """``source`` if it is a folder, else the Hub repository ``source`` downloaded (publishable files only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{source} is a file, not a model folder or a repo id.")
    try:
        check_repo_id(str(source))
    except ValueError as error:
        raise ValueError(f"{source!r} is not a folder. {error}") from error
    try:
        return Path(snapshot_download(str(source), revision=revision, allow_patterns=PUSH_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise ValueError(f"Cannot download {source!r} from the Hub: {error}") from error
