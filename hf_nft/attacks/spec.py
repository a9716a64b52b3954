"""AttackSpec: one attack's settings, validated on creation, round-tripping through JSON and YAML."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_nft.attacks.files import dump_structured, read_structured, write_text
from hf_nft.optimizers import check_optimizer_name
from hf_nft.registry import ATTACKS


def check_keys(given: dict[str, Any], known: list[str], what: str) -> None:
    """Raise a ``ValueError`` with a "did you mean" hint for the first key of ``given`` not in ``known``."""
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown {what} {key!r}.{hint} Known: {sorted(known)}.")


@dataclass
class AttackSpec:
    """An attack on a classifier: its kind (a name in ``hf_nft.registry.ATTACKS``) and hyperparameters.

    ``examples_per_class`` is the attacker's data budget (labelled restricted examples per class; ``None``
    uses the whole training set). ``epochs``, when set, takes precedence over ``steps``. Kind-specific
    settings (LoRA rank, probe width, search space, ...) go in ``options``. ``eval_at_start`` measures the
    metric before the first step (the curve's step 0); a run that only needs its final value can skip it.
    """

    kind: str
    name: str = ""
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    steps: int = 200
    epochs: float | None = None
    examples_per_class: int | None = None
    reset_head: bool = False
    eval_every: int = 50
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    eval_at_start: bool = True

    def __post_init__(self) -> None:
        attack_class = ATTACKS.get(self.kind)
        self._coerce_types()
        check_optimizer_name(self.optimizer)
        positive = {"learning_rate": self.learning_rate, "batch_size": self.batch_size, "steps": self.steps}
        positive["eval_every"] = self.eval_every
        if self.epochs is not None:
            positive["epochs"] = self.epochs
        if self.examples_per_class is not None:
            positive["examples_per_class (the data budget)"] = self.examples_per_class
        for label, value in positive.items():
            if not value > 0:
                raise ValueError(f"Attack {self.kind!r}: {label} must be positive, got {value}.")
        if self.weight_decay < 0:
            raise ValueError(f"Attack {self.kind!r}: weight_decay must be non-negative, got {self.weight_decay}.")
        attack_class.check_options(self.options)
        self.name = self.name or attack_class.label(self)

    def _coerce_types(self) -> None:
        """Accept numbers written as strings (YAML reads ``1e-3`` as one); reject anything else."""
        types = {"learning_rate": float, "weight_decay": float, "epochs": float, "batch_size": int, "steps": int}
        types |= {"examples_per_class": int, "eval_every": int, "seed": int}
        for name, kind in types.items():
            value = getattr(self, name)
            if value is None and name in ("epochs", "examples_per_class"):
                continue
            try:
                converted = kind(value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"Attack {self.kind!r}: {name} must be a number, got {value!r}.") from error
            if isinstance(value, bool) or (kind is int and converted != float(value)):
                raise ValueError(f"Attack {self.kind!r}: {name} must be {kind.__name__}, got {value!r}.")
            setattr(self, name, converted)
        for flag in ("reset_head", "eval_at_start"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"Attack {self.kind!r}: {flag} must be true or false, got {getattr(self, flag)!r}.")
        if not isinstance(self.options, dict):
            raise ValueError(f"Attack {self.kind!r}: options must be a mapping, got {self.options!r}.")

    def total_steps(self, num_examples: int) -> int:
        """Optimisation steps of the attack, given the number of training examples it sees."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * num_examples / self.batch_size))

    def replace(self, **changes: Any) -> AttackSpec:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/YAML-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackSpec:
        """Build from :meth:`to_dict` output; unknown keys raise a ``ValueError`` with a hint."""
        if not isinstance(data, dict) or "kind" not in data:
            raise ValueError(f"An attack must be a mapping with a 'kind' key, got {data!r}.")
        check_keys(data, [f.name for f in dataclasses.fields(cls)], "attack field")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write to a ``.json`` or ``.yaml`` file (atomically)."""
        write_text(path, dump_structured(self.to_dict(), path))

    @classmethod
    def load(cls, path: str | Path) -> AttackSpec:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(read_structured(path))
