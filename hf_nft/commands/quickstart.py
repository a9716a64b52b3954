"""``hf-nft quickstart``: protect a digit classifier against uci-digits, attack it, print the report."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quickstart`` sub-command."""
    parser = subparsers.add_parser("quickstart", help="Pre-train, protect (SOPHON), attack and report on digits.")
    parser.add_argument("--output", default="runs/quickstart", help="Folder for models, report, plot and card.")
    parser.add_argument("--fast", action="store_true", help="A short run (minutes less; weaker protection).")
    parser.add_argument("--suite", default=None, help="Attack suite (default: 'default', or 'quick' with --fast).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: for these small models one thread is faster than "
                        "two busy ones; use 2 on an otherwise idle 2-core machine for the text and diffusion modes).")
    parser.add_argument("--mode", choices=("sophon", "map", "diffusion", "text", "encoderlock"), default="sophon",
                        help="sophon: protect against fine-tuning (default); map: mask-prune the model (MAP), "
                        "written under OUTPUT/map-SETTING (reusing OUTPUT/unprotected when it exists); diffusion: "
                        "protect a DDPM (SOPHON's diffusion mode), written under OUTPUT/diffusion; text: block a harmful "
                        "task in MiniLM with MLAC and attack it over a data budget (OUTPUT/text); encoderlock: lock "
                        "the encoder against probing, under OUTPUT/encoderlock-SETTING.")
    parser.add_argument("--setting", default=None,
                        help="With --mode map, what the owner has besides the model: source-available (default), "
                        "source-free or data-free. With --mode encoderlock, what it has of the prohibited domain: "
                        "supervised (default), unsupervised or zero-shot.")
    parser.add_argument("--draws", type=int, default=None,
                        help="With --mode text, run every attack this many times at every budget, on other draws of "
                        "the attacker's labelled examples, and report the mean (default: ceil(60 / budget), i.e. 3 "
                        "at 20 examples and 1 from 60 up).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the quickstart and print the table, the checks and the timings."""
    import torch

    from hf_nft.quickstart import run_quickstart

    if args.threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {args.threads}.")
    if args.draws is not None and (args.mode != "text" or args.draws < 1):
        raise SystemExit(f"--draws takes a positive count and only applies to --mode text, got {args.draws} "
                         f"with --mode {args.mode}.")
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    if args.mode == "text":  # issue 5: MLAC task blocking on MiniLM
        from hf_nft.text_quickstart import print_text_result, run_text_quickstart

        print_text_result(run_text_quickstart(f"{args.output}/text", fast=args.fast, seed=args.seed,
                                              progress=not args.no_progress, draws=args.draws))
        return 0
    if args.mode == "map":
        from hf_nft.map_quickstart import print_map_result, run_map_quickstart

        print_map_result(run_map_quickstart(args.output, setting=args.setting or "source-available", fast=args.fast,
                                            suite=args.suite, seed=args.seed, progress=not args.no_progress))
        return 0
    if args.mode == "encoderlock":
        from hf_nft.encoderlock_quickstart import print_encoderlock_result, run_encoderlock_quickstart

        print_encoderlock_result(run_encoderlock_quickstart(
            args.output, setting=args.setting or "supervised", fast=args.fast, seed=args.seed,
            progress=not args.no_progress, probes=args.suite != "none",
        ))
        return 0
    if args.mode == "diffusion":
        from hf_nft.diffusion_quickstart import print_diffusion_result, run_diffusion_quickstart

        print_diffusion_result(run_diffusion_quickstart(f"{args.output}/diffusion", fast=args.fast, seed=args.seed,
                                                        progress=not args.no_progress))
        return 0
    result = run_quickstart(args.output, fast=args.fast, suite=args.suite, seed=args.seed,
                            progress=not args.no_progress)
    print(result.report.table())
    print("\nChecks (foundation issue):")
    for name, holds in result.checks.items():
        print(f"  [{'ok' if holds else 'FAIL'}] {name}")
    timings = ", ".join(f"{phase} {seconds:.0f}s" for phase, seconds in result.seconds.items())
    print(f"\nTimings: {timings}")
    print(f"Outputs in {result.output_dir}: protected/ (model + README.md card), report.json, curves.png")
    return 0
