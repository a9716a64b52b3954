"""``hf-nft verify``: re-run a protected model's listed attacks and compare with what its card claims."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verify`` sub-command."""
    from hf_nft.verify import MODES, TOLERANCE

    parser = subparsers.add_parser(
        "verify",
        help="Re-check a protected model's claims (weights hash, attack results).",
        description="Read the protection metadata of MODEL_DIR_OR_REPO (a folder or a Hub repo id), check the "
        "weights hash and the data fingerprints, re-run the attacks it lists with their seeds and budgets, and "
        "print claim vs re-measured. Exit 0 when everything agrees, 1 on any mismatch, 2 on bad input.",
    )
    parser.add_argument("source", metavar="MODEL_DIR_OR_REPO", help="Model folder or Hub repository id.")
    parser.add_argument("--attacks", choices=MODES, default="all",
                        help="all (every attack and seed) or quick (first seed of the first few cheap attacks).")
    parser.add_argument("--reference", metavar="UNPROTECTED_DIR",
                        help="Unprotected model folder, to re-measure the unprotected figures too.")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"Largest absolute difference accepted for a figure (default {TOLERANCE}).")
    parser.add_argument("--revision", help="Hub revision to verify (default: main).")
    parser.add_argument("--device", help="Device for the models (default: cuda if available).")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify and print the table; 0 passed, 1 mismatch, 2 bad input."""
    import torch

    from hf_nft.verify import verify

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = verify(args.source, attacks=args.attacks, reference=args.reference, tolerance=args.tolerance,
                        revision=args.revision, device=args.device)
    except ValueError as error:
        print(f"hf-nft verify: error: {error}", file=sys.stderr)
        return 2
    print(result.table())
    return 0 if result.passed else 1
