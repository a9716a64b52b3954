"""``verify``: re-check a published protected model's claims.

It reads the claims (the card's ``nft:`` block and ``nft_config.json``, which must agree, and the card's
``model-index``), checks that each claimed mean and std follow from the per-seed figures, that the weights hash
matches, that the attack data is the data the claims were measured on, and re-runs the listed attacks with their
seeds and budgets. Re-measured: the protected model and the scratch baseline (rebuilt from the model's config
with the recorded seed) always, the unprotected model only when its folder is given. A re-measured figure
matches when it is within ``tolerance`` (absolute, default 0.02) of the claim; attacks are deterministic on a
CPU given their seeds, so honest claims re-measure to the same numbers up to floating-point noise.
``attacks="quick"`` re-runs only the first seed of the first few attacks without a hyperparameter search.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_nft.attacks.base import SearchAttack
from hf_nft.attacks.suite import Suite
from hf_nft.fingerprints import dataset_fingerprint, weights_sha256
from hf_nft.hub import CARD_FILE, METRIC_PREFIX, eval_results, load_card
from hf_nft.metadata import METADATA_FILE, DataRecord, NFTMetadata
from hf_nft.registry import ATTACKS

TOLERANCE = 0.02
QUICK_ATTACKS = 3
CONSISTENCY = 1e-9  # claims derived from other claims (mean/std of the seeds, model-index) must agree exactly
MODES = ("all", "quick")


@dataclass
class Check:
    """One compared figure: what was claimed, what was found, and the outcome (``ok``, ``MISMATCH``,
    ``skipped``)."""

    name: str
    claimed: str
    measured: str
    status: str


@dataclass
class Verification:
    """Every check made on one model, with the tolerance figures were held to."""

    source: str
    mode: str
    tolerance: float
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.status != "MISMATCH" for check in self.checks)

    @property
    def mismatches(self) -> list[Check]:
        return [check for check in self.checks if check.status == "MISMATCH"]

    def table(self) -> str:
        """A plain-text table of claim vs re-measured, and the verdict."""
        width = max(len(check.name) for check in self.checks) + 2
        lines = [f"Verifying {self.source} (attacks: {self.mode}; figures must agree within {self.tolerance:g})",
                 f"{'check':<{width}}{'claimed':>18}{'re-measured':>18}  status"]
        lines += [f"{c.name:<{width}}{c.claimed:>18}{c.measured:>18}  {c.status}" for c in self.checks]
        verdict = "PASSED" if self.passed else f"FAILED: {len(self.mismatches)} mismatch(es): " + "; ".join(
            check.name for check in self.mismatches)
        return "\n".join([*lines, verdict])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return text if len(text) <= 16 else text[:13] + "..."


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {key: item for name, child in value.items() for key, item in _flatten(child, f"{prefix}{name}.").items()}
    if isinstance(value, list):
        return {key: item for index, child in enumerate(value)
                for key, item in _flatten(child, f"{prefix}{index}.").items()}
    return {prefix.rstrip("."): value}


def _compare(name: str, claimed: float, measured: float | None, tolerance: float) -> Check:
    """A claimed figure against its re-measurement (``None``: not re-run)."""
    if measured is None:
        return Check(name, _short(claimed), "not re-run", "skipped")
    ok = math.isclose(claimed, measured, rel_tol=0.0, abs_tol=tolerance)
    return Check(name, _short(claimed), _short(measured), "ok" if ok else "MISMATCH")


def read_claims(folder: Path) -> tuple[NFTMetadata, list[Check]]:
    """The claims of ``folder`` (from the card when it has an ``nft:`` block, else ``nft_config.json``) and the
    checks that the card, its ``model-index`` and ``nft_config.json`` agree."""
    card = load_card(folder / CARD_FILE) if (folder / CARD_FILE).is_file() else None
    card_block = card.data.get("nft") if card is not None else None
    stored = NFTMetadata.load(folder) if (folder / METADATA_FILE).is_file() else None
    if card_block is None and stored is None:
        raise ValueError(f"{folder}: no protection metadata (neither {METADATA_FILE} nor an 'nft:' block in "
                         f"{CARD_FILE}); was it saved by NFTTrainer?")
    claims = NFTMetadata.from_dict(card_block, f"{folder / CARD_FILE} 'nft:' block") if card_block else stored
    checks = []
    if card_block is not None and stored is not None:
        ours, theirs = _flatten(card_block), _flatten(stored.to_dict())
        differing = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
        checks += [Check(f"card vs {METADATA_FILE}: {key}", _short(ours.get(key)), _short(theirs.get(key)),
                         "MISMATCH") for key in differing]
        if not differing:
            checks.append(Check(f"card 'nft:' block = {METADATA_FILE}", "", "", "ok"))
    if card is not None:
        listed = {r.metric_name: r.metric_value for r in card.data.eval_results or []
                  if (r.metric_name or "").startswith(METRIC_PREFIX)}
        for result in eval_results(claims):
            value = listed.get(result.metric_name)
            if value is None or not math.isclose(value, result.metric_value, rel_tol=0.0, abs_tol=CONSISTENCY):
                checks.append(Check(f"model-index: {result.metric_name}", _short(value),
                                    _short(result.metric_value), "MISMATCH"))
    for attack, by_role in claims.results.items():
        for role, claim in by_role.items():
            std = statistics.stdev(claim.finals) if len(claim.finals) > 1 else 0.0
            for what, value, derived in (("mean", claim.mean, statistics.fmean(claim.finals)), ("std", claim.std, std)):
                if not math.isclose(value, derived, rel_tol=0.0, abs_tol=CONSISTENCY):
                    checks.append(Check(f"{attack}, {role}: {what} of the claimed seeds", _short(value),
                                        _short(derived), "MISMATCH"))
    return claims, checks


def _data(record: DataRecord | None, role: str) -> tuple[Any, Check] | tuple[None, None]:
    from hf_nft.data import load_renderings

    if record is None:
        return None, None
    if record.domain is None or record.split is None or record.resample is None:
        raise ValueError(f"The {role} data is not an hf_nft.data domain, so its attacks cannot be re-run here.")
    dataset = load_renderings(record.domain, record.split, tuple(record.resample.split("+")))
    fingerprint = dataset_fingerprint(dataset)
    status = "ok" if fingerprint == record.fingerprint else "MISMATCH"
    return dataset, Check(f"{role} data ({record.domain}/{record.split})", _short(record.fingerprint),
                          _short(fingerprint), status)


def _suite(claims: NFTMetadata, mode: str) -> Suite:
    suite = Suite.from_dict(claims.suite)
    if mode == "all":
        return suite
    cheap = [spec for spec in suite.attacks if not issubclass(ATTACKS.get(spec.kind), SearchAttack)]
    return Suite(name=f"{suite.name} (quick)", attacks=cheap[:QUICK_ATTACKS], seeds=suite.seeds[:1])


def verify(source: str | Path, *, attacks: str = "all", reference: str | Path | None = None,
           tolerance: float = TOLERANCE, revision: str | None = None, device: str | None = None) -> Verification:
    """Re-check the claims of the protected model in folder or Hub repository ``source`` (module docstring)."""
    from hf_nft.evaluation.report import evaluate_protection
    from hf_nft.upload import local_model_folder

    if attacks not in MODES:
        raise ValueError(f"Unknown attacks mode {attacks!r}; expected one of {MODES}.")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be non-negative, got {tolerance}.")
    folder = local_model_folder(source, revision)
    claims, checks = read_claims(folder)
    measured_hash = weights_sha256(folder)
    checks.insert(0, Check("weights sha256", _short(claims.weights_sha256), _short(measured_hash),
                           "ok" if measured_hash == claims.weights_sha256 else "MISMATCH"))
    if not claims.results or claims.suite is None:
        raise ValueError(f"{source}: the metadata records no attack results to verify.")
    suite = _suite(claims, attacks)
    loaded = {role: _data(claims.data.get(role), role) for role in ("attack_train", "attack_eval", "original_eval")}
    if loaded["attack_train"][0] is None or loaded["attack_eval"][0] is None:
        raise ValueError(f"{source}: the metadata does not record the attack data (attack_train, attack_eval).")
    checks += [check for _, check in loaded.values() if check is not None]
    claimed_roles = {role for by_role in claims.results.values() for role in by_role}
    report = evaluate_protection(
        folder, loaded["attack_train"][0], loaded["attack_eval"][0], suite=suite, reference=reference,
        scratch="scratch" in claimed_roles, original_eval=loaded["original_eval"][0], progress=False,
        metric=claims.metric, scratch_seed=claims.scratch_seed, device=device,
    )
    for what, claimed, measured in (("original domain", claims.original, report.original),
                                    ("restricted domain, no attack", claims.before, report.before)):
        checks += [_compare(f"{what}, {role}", value, measured.get(role), tolerance) for role, value in claimed.items()]
    seeds = claims.suite["seeds"]
    for spec in suite.attacks:
        for role, claim in claims.results[spec.name].items():
            outcome = report.results[spec.name].get(role)
            for index, seed in enumerate(suite.seeds):
                measured = outcome.finals[index] if outcome else None
                checks.append(_compare(f"{spec.name}, {role}, seed {seed}", claim.finals[seeds.index(seed)],
                                       measured, tolerance))
            if attacks == "all":
                measured = outcome.final_mean if outcome else None
                checks.append(_compare(f"{spec.name}, {role}, mean", claim.mean, measured, tolerance))
    return Verification(str(source), attacks, tolerance, checks)
