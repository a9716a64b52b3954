"""``hf-nft push``: upload a protected model folder (weights, metadata, card, plots) to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``push`` sub-command."""
    parser = subparsers.add_parser(
        "push",
        help="Upload a protected model folder to the Hugging Face Hub.",
        description="Create REPO_ID if needed and upload MODEL_DIR's safetensors weights, config, nft_config.json, "
        "README.md card and PNG plots in one commit. The endpoint and token are huggingface_hub's "
        "(HF_ENDPOINT, HF_TOKEN or `hf auth login`). The folder's weights must match its nft_config.json.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Folder written by NFTTrainer (or the quickstart).")
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, e.g. user/my-protected-model.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--revision", help="Branch to commit to (created from main if missing).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Push; exit code 2 on bad input (the message names the problem)."""
    from huggingface_hub.errors import HfHubHTTPError

    from hf_nft.upload import push_folder

    try:
        info = push_folder(args.model_dir, args.repo_id, private=args.private or None, revision=args.revision)
    except (ValueError, HfHubHTTPError) as error:
        print(f"hf-nft push: error: {error}", file=sys.stderr)
        return 2
    print(f"Pushed {args.model_dir} to {info.repo_url.repo_id}: {info.commit_url}")
    return 0
