"""Attack suites: named sets of attacks (``quick``, ``default``, ``strong``) or user files (YAML/JSON).

A suite file looks like::

    name: my-suite
    seeds: [0, 1]
    examples_per_class: 10          # the attacker's data budget, for attacks that set none
    defaults: {steps: 200, batch_size: 16, eval_every: 25}
    attacks:
      - {kind: full_finetune, optimizer: adam, learning_rate: 1e-3}
      - {kind: lora, learning_rate: 3e-3, options: {rank: 4}}
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_nft.attacks.files import dump_structured, read_structured, write_text
from hf_nft.attacks.spec import AttackSpec, check_keys

SUITE_KEYS = ["name", "seeds", "examples_per_class", "defaults", "attacks"]


@dataclass
class Suite:
    """A named list of attacks, each run once per seed in ``seeds``."""

    name: str
    attacks: list[AttackSpec]
    seeds: list[int]

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ValueError(f"Suite {self.name!r} has no attacks.")
        if not self.seeds or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in self.seeds):
            raise ValueError(f"Suite {self.name!r}: seeds must be a non-empty list of integers, got {self.seeds!r}.")
        names = [spec.name for spec in self.attacks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"Suite {self.name!r}: attack names must be unique; repeated: {repeated}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form; :meth:`from_dict` reads it back."""
        return {"name": self.name, "seeds": list(self.seeds), "attacks": [spec.to_dict() for spec in self.attacks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suite:
        """Build from a mapping with the keys of :data:`SUITE_KEYS` (see the module docstring)."""
        if not isinstance(data, dict):
            raise ValueError(f"A suite must be a mapping with an 'attacks' list, got {type(data).__name__}.")
        check_keys(data, SUITE_KEYS, "suite key")
        attacks, defaults = data.get("attacks"), data.get("defaults") or {}
        if not isinstance(attacks, list) or not isinstance(defaults, dict):
            raise ValueError("A suite needs an 'attacks' list (and 'defaults', if given, must be a mapping).")
        if "examples_per_class" in data:
            defaults = {**defaults, "examples_per_class": data["examples_per_class"]}
        specs = []
        for index, attack in enumerate(attacks):
            if not isinstance(attack, dict):
                raise ValueError(f"Attack #{index + 1} of the suite must be a mapping, got {attack!r}.")
            specs.append(AttackSpec.from_dict({**defaults, **attack}))
        return cls(name=str(data.get("name", "custom")), attacks=specs, seeds=list(data.get("seeds", [0])))

    def save(self, path: str | Path) -> None:
        """Write to a ``.json`` or ``.yaml`` file (atomically)."""
        write_text(path, dump_structured(self.to_dict(), path))


def _quick() -> dict[str, Any]:
    """Seconds: three cheap attacks, one seed, for CI."""
    return {
        "name": "quick",
        "seeds": [0],
        "examples_per_class": 5,
        "defaults": {"steps": 30, "batch_size": 16, "eval_every": 10},
        "attacks": [
            {"kind": "full_finetune", "optimizer": "adam", "learning_rate": 1e-3},
            {"kind": "linear_probe", "optimizer": "adam", "learning_rate": 1e-2, "reset_head": True},
            {"kind": "lora", "optimizer": "adam", "learning_rate": 3e-3},
        ],
    }


DEFAULT_ATTACKS: list[dict[str, Any]] = [
    {"kind": "full_finetune", "optimizer": "adam", "learning_rate": 1e-3},
    {"kind": "full_finetune", "optimizer": "sgd", "learning_rate": 1e-1},
    {"kind": "full_finetune", "optimizer": "nesterov", "learning_rate": 3e-2},
    {"kind": "full_finetune", "optimizer": "adam", "learning_rate": 3e-3, "reset_head": True},
    {"kind": "full_finetune", "optimizer": "adamw", "learning_rate": 3e-4, "weight_decay": 0.01},
    {"kind": "full_finetune", "optimizer": "rmsprop", "learning_rate": 1e-4},
    {"kind": "full_finetune", "optimizer": "adadelta", "learning_rate": 1.0},
    {"kind": "partial_finetune", "optimizer": "adagrad", "learning_rate": 1e-2, "options": {"num_blocks": 1}},
    {"kind": "linear_probe", "optimizer": "adam", "learning_rate": 1e-2, "reset_head": True},
    {"kind": "mlp_probe", "optimizer": "adam", "learning_rate": 1e-3, "options": {"hidden_size": 128}},
    {"kind": "lora", "optimizer": "adam", "learning_rate": 3e-3, "options": {"rank": 8}},
]
TUNED_ATTACK: dict[str, Any] = {"kind": "tuned", "options": {"trials": 12, "steps": [100, 300]}}


def _default() -> dict[str, Any]:
    """Every attack kind, 7 optimizers, 7 learning rates and the tuned attacker; 300 steps on one labelled
    example per class, two seeds.

    A few-shot budget: the regime where a pre-trained model helps an attacker most over training from
    scratch (with 2-4 examples per class the quickstart's scratch model comes within 10 points of the
    pre-trained one under several of these attacks, so a protection could not be told apart from no model).
    """
    return {
        "name": "default",
        "seeds": [0, 1],
        "examples_per_class": 1,
        "defaults": {"steps": 300, "batch_size": 16, "eval_every": 50},
        "attacks": [*DEFAULT_ATTACKS, TUNED_ATTACK],
    }


def _strong() -> dict[str, Any]:
    """The default attacks for longer, on more data, over three seeds, with a 30-trial tuned attacker."""
    tuned = {"kind": "tuned", "options": {"trials": 30, "steps": [100, 600]}}
    return {
        "name": "strong",
        "seeds": [0, 1, 2],
        "examples_per_class": 5,
        "defaults": {"steps": 600, "batch_size": 16, "eval_every": 100},
        "attacks": [*DEFAULT_ATTACKS, tuned],
    }


SUITES: dict[str, Callable[[], dict[str, Any]]] = {"quick": _quick, "default": _default, "strong": _strong}


def load_suite(suite: str | Path | Suite | list[AttackSpec]) -> Suite:
    """A suite from its name (see :data:`SUITES`), a YAML/JSON file, or a list of specs (seed 0)."""
    if isinstance(suite, Suite):
        return suite
    if isinstance(suite, list):
        return Suite(name="custom", attacks=suite, seeds=[0])
    if isinstance(suite, str) and suite in SUITES:
        return Suite.from_dict(SUITES[suite]())
    path = Path(suite)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        close = difflib.get_close_matches(str(suite), SUITES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown suite {str(suite)!r}.{hint} Use one of {sorted(SUITES)} or a .yaml/.json file.")
    try:
        return Suite.from_dict(read_structured(path))
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from error
