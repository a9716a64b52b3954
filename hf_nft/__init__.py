"""hf_nft: non-fine-tunable learning for the Hugging Face ecosystem.

Public names are imported lazily so that ``import hf_nft`` stays cheap (no diffusers or peft until used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "NFTConfig": "hf_nft.config",
    "NFTTrainer": "hf_nft.trainer",
    "ProtectionMethod": "hf_nft.methods.base",
    "load_domain": "hf_nft.data",
    "available_domains": "hf_nft.data",
    "evaluate_protection": "hf_nft.evaluation.report",
    "ProtectionReport": "hf_nft.evaluation.report",
    "AttackSpec": "hf_nft.attacks.spec",
    "run_attack": "hf_nft.attacks.runner",
    "load_suite": "hf_nft.attacks.suite",
    "AttackEvalCallback": "hf_nft.callbacks",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_nft' has no attribute {name!r}")
