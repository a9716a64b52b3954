"""The ``hf-nft`` command line: one sub-command per module in :mod:`hf_nft.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from hf_nft import commands


def build_parser() -> argparse.ArgumentParser:
    """A parser with every sub-command found in :mod:`hf_nft.commands` (each module has ``register``)."""
    parser = argparse.ArgumentParser(prog="hf-nft", description="Non-fine-tunable learning for Hugging Face models.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hf-nft`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
