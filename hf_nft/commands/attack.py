"""``hf-nft attack``: run an attack suite on a saved classifier and write the protection report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``attack`` sub-command."""
    parser = subparsers.add_parser(
        "attack",
        help="Attack a saved classifier with a suite and report how well it resists.",
        description="Run an attack suite on MODEL_DIR (any AutoModelFor{Image,Sequence}Classification "
        "directory) with restricted-domain data; print a table and write report.json and curves.png.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Directory of the (protected) model.")
    parser.add_argument("--restricted", required=True, metavar="DOMAIN", help="Restricted domain (hf_nft.data).")
    parser.add_argument("--original", metavar="DOMAIN", help="Original domain, for the metric before any attack.")
    parser.add_argument("--suite", default="default", help="quick, default, strong, or a .yaml/.json suite file.")
    parser.add_argument("--reference", metavar="UNPROTECTED_DIR", help="Directory of the unprotected model.")
    parser.add_argument("--no-scratch", action="store_true", help="Skip the freshly initialised baseline.")
    parser.add_argument("--seeds", type=int, nargs="+", help="Seeds (overrides the suite's).")
    parser.add_argument("--metric", default="accuracy", help="Metric name (hf_nft.registry.METRICS).")
    parser.add_argument("--target", type=float, help="Metric value the fine-tuning overhead counts steps to.")
    parser.add_argument("--device", help="Device for models loaded from directories (default: cuda if available).")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice).")
    parser.add_argument("--output", required=True, metavar="DIR", help="Folder for report.json and curves.png.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the suite; exit code 2 on bad input (the message names the problem)."""
    import torch

    from hf_nft.data import load_domain
    from hf_nft.evaluation.report import evaluate_protection

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = evaluate_protection(
            args.model_dir,
            load_domain(args.restricted, "train"),
            load_domain(args.restricted, "test"),
            suite=args.suite,
            reference=args.reference,
            scratch=not args.no_scratch,
            original_eval=load_domain(args.original, "test") if args.original else None,
            seeds=args.seeds,
            metric=args.metric,
            target=args.target,
            device=args.device,
        )
    except ValueError as error:
        print(f"hf-nft attack: error: {error}", file=sys.stderr)
        return 2
    output = Path(args.output)
    report.to_json(output / "report.json")
    report.plot(output / "curves.png")
    print(report.table())
    print(f"Report: {output / 'report.json'}  Curves: {output / 'curves.png'}")
    return 0
