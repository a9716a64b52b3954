"""Protection metadata (``nft_config.json``): what protected a model, against what, how it was attacked and
what the attacks achieved, with a hash of the weights it describes.

Schema version 1 (every key of :class:`NFTMetadata`, JSON-serialisable):

- ``method``, ``settings``: the protection method and its settings (``ProtectionMethod.settings()``).
- ``original_domain``, ``restricted_domains``: domain names (``hf_nft.data`` names where they are ones).
- ``data``: the datasets used, by role (``protection_original``, ``protection_restricted``, ``attack_train``,
  ``attack_eval``, ``original_eval``), each a :class:`DataRecord` (domain, split, size, sha256 fingerprint).
- ``task``: the pipeline tag (``image-classification`` or ``text-classification``).
- ``suite``: the attack suite as run (``Suite.to_dict()``: name, seeds, every attack's budget), or ``None``.
- ``metric``, ``higher_is_better``, ``scratch_seed``: how results were measured.
- ``original``: original-domain metric per model role before any attack; ``before``: restricted-domain metric
  per role before any attack.
- ``results``: per attack name, per role (``protected``, ``unprotected``, ``scratch``), a :class:`Claim`
  (mean and sample std over seeds, and the final metric of each seed in suite order).
- ``versions``: versions of hf_nft and the libraries it ran with; ``weights_sha256``: see
  :func:`hf_nft.fingerprints.weights_sha256`; ``schema_version``.

Keys from a newer schema version are ignored with a warning; missing required keys are a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from hf_nft.attacks.files import write_text
from hf_nft.fingerprints import dataset_fingerprint

SCHEMA_VERSION = 1
METADATA_FILE = "nft_config.json"
LIBRARIES = ("hf-nft", "torch", "transformers", "huggingface_hub", "datasets", "safetensors", "peft")
# ``hf_nft.data.load_domain`` writes this description on every domain it loads.
_DOMAIN_DESCRIPTION = re.compile(r"hf_nft domain '(?P<domain>[^']+)', split '(?P<split>[^']+)', (?P<mode>\w+) resampling")
TASKS = {"AutoModelForImageClassification": "image-classification",
         "AutoModelForSequenceClassification": "text-classification"}


@dataclass
class DataRecord:
    """One dataset used for protection or attacks: its size and fingerprint (``""`` unless it is a
    ``datasets.Dataset``), and for ``hf_nft.data`` domains their name, split and resampling."""

    size: int
    fingerprint: str
    domain: str | None = None
    split: str | None = None
    resample: str | None = None

    @classmethod
    def of(cls, dataset: Any) -> DataRecord:
        """Describe ``dataset``; the domain, split and resampling(s) (``+``-joined, as ``load_renderings``
        concatenates them) are those ``hf_nft.data.load_domain`` records."""
        if not isinstance(dataset, Dataset):
            return cls(size=len(dataset), fingerprint="")
        parts = _DOMAIN_DESCRIPTION.findall(dataset.info.description or "")
        named = {}
        if parts and len({(domain, split) for domain, split, _ in parts}) == 1:
            named = {"domain": parts[0][0], "split": parts[0][1], "resample": "+".join(mode for *_, mode in parts)}
        return cls(size=len(dataset), fingerprint=dataset_fingerprint(dataset), **named)


@dataclass
class Claim:
    """A model role's restricted-domain metric after one attack: mean and sample std over seeds, per-seed finals."""

    mean: float
    std: float
    finals: list[float]

    @classmethod
    def of(cls, finals: list[float]) -> Claim:
        finals = [float(value) for value in finals]
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        return cls(mean=statistics.fmean(finals), std=std, finals=finals)


def pipeline_task(model: Any) -> str:
    """The pipeline tag of a classifier (``image-classification`` or ``text-classification``)."""
    from hf_nft.attacks.models import auto_class

    return TASKS[auto_class(model.config, type(model).__name__).__name__]


def library_versions() -> dict[str, str]:
    """Installed versions of hf_nft and the libraries it builds on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class NFTMetadata:
    """The protection metadata of one saved model (schema in this module's docstring)."""

    method: str
    settings: dict[str, Any]
    original_domain: str | None
    restricted_domains: list[str]
    data: dict[str, DataRecord] = field(default_factory=dict)
    task: str = "image-classification"
    suite: dict[str, Any] | None = None
    metric: str = "accuracy"
    higher_is_better: bool = True
    scratch_seed: int = 0
    original: dict[str, float] = field(default_factory=dict)
    before: dict[str, float] = field(default_factory=dict)
    results: dict[str, dict[str, Claim]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    weights_sha256: str = ""
    schema_version: int = SCHEMA_VERSION

    def with_report(self, report: Any, suite: Any, attack_train: Dataset, attack_eval: Dataset,
                    original_eval: Dataset | None = None, scratch_seed: int = 0) -> NFTMetadata:
        """A copy holding ``report``'s figures (a ``ProtectionReport``), the ``suite`` it ran (a ``Suite``) and
        records of the data the attacks used; a ``ValueError`` if the suite's attacks are not the report's."""
        names = [spec.name for spec in suite.attacks]
        if names != list(report.results):
            raise ValueError(f"The suite's attacks {names} are not the report's {list(report.results)}.")
        data = {**self.data, "attack_train": DataRecord.of(attack_train), "attack_eval": DataRecord.of(attack_eval)}
        if original_eval is not None:
            data["original_eval"] = DataRecord.of(original_eval)
        results = {name: {role: Claim.of(outcome.finals) for role, outcome in outcomes.items()}
                   for name, outcomes in report.results.items()}
        return dataclasses.replace(
            self, data=data, suite=suite.to_dict(), metric=report.metric, higher_is_better=report.higher_is_better,
            scratch_seed=scratch_seed, original=dict(report.original), before=dict(report.before), results=results,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON- and YAML-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "protection metadata") -> NFTMetadata:
        """Inverse of :meth:`to_dict`; warns on keys or a schema version newer than this hf_nft knows."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping, got {type(data).__name__}.")  # noqa: TRY004
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"{source}: schema_version must be an integer, got {version!r}.")  # noqa: TRY004
        if version > SCHEMA_VERSION:
            warnings.warn(f"{source} has schema version {version}, newer than this hf_nft's {SCHEMA_VERSION}: "
                          "reading the fields this version knows.", stacklevel=2)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            warnings.warn(f"{source}: ignoring unknown keys {unknown}.", stacklevel=2)
        required = [name for name, f in known.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"{source}: missing required keys {missing}.")
        values = {key: value for key, value in data.items() if key in known}
        values.setdefault("versions", {})
        try:
            values["data"] = {role: DataRecord(**record) for role, record in values.get("data", {}).items()}
            values["results"] = {name: {role: Claim(**claim) for role, claim in by_role.items()}
                                 for name, by_role in values.get("results", {}).items()}
        except (TypeError, AttributeError) as error:
            raise ValueError(f"{source}: malformed 'data' or 'results' ({error}).") from error
        return cls(**values)

    def save(self, folder: str | Path) -> Path:
        """Write ``nft_config.json`` into ``folder`` atomically; return its path."""
        path = Path(folder) / METADATA_FILE
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> NFTMetadata:
        """Read ``nft_config.json`` from ``folder``; a ``ValueError`` naming the file if it is absent or broken."""
        path = Path(folder) / METADATA_FILE
        if not path.is_file():
            raise ValueError(f"{folder}: no protection metadata ({METADATA_FILE} not found).")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not readable JSON ({error}).") from error
        return cls.from_dict(data, source=str(path))
