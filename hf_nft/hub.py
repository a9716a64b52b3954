"""Model cards for protected models: rendered from the packaged template by a pure function, merged into an
existing card without touching what its author wrote outside hf_nft's section, and written atomically."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_nft.attacks.files import write_text
from hf_nft.fingerprints import weights_sha256
from hf_nft.metadata import NFTMetadata

TEMPLATE_PATH = Path(__file__).parent / "templates" / "nft_model_card.md"
CARD_FILE = "README.md"
ROLES = ("protected", "unprotected", "scratch")
# Evaluation results hf_nft writes carry this metric-name prefix; on update they are replaced, others kept.
METRIC_PREFIX = "hf-nft: "
_SECTION = re.compile(r"<!-- hf-nft:begin.*?<!-- hf-nft:end -->\n?", re.DOTALL)


def _figure(claim: Any) -> str:
    return "n/a" if claim is None else f"{claim.mean:.3f} ± {claim.std:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _split(metadata: NFTMetadata, role: str) -> str | None:
    record = metadata.data.get(role)
    return record.split if record else None


def _budget(spec: dict[str, Any]) -> str:
    shots = spec.get("examples_per_class")
    data = "all data" if shots is None else f"{shots}/class"
    if spec["kind"] == "tuned":
        return f"{spec['options'].get('trials', '?')} trials, {data}"
    steps = f"{spec['epochs']:g} epochs" if spec.get("epochs") else f"{spec['steps']} steps"
    return f"{steps}, batch {spec['batch_size']}, {data}"


def headline_attack(metadata: NFTMetadata) -> str | None:
    """The attack with the best final restricted metric on the protected model, for the attacker."""
    sign = 1.0 if metadata.higher_is_better else -1.0
    attacked = [name for name, by_role in metadata.results.items() if "protected" in by_role]
    return max(attacked, key=lambda name: sign * metadata.results[name]["protected"].mean, default=None)


def eval_results(metadata: NFTMetadata) -> list[EvalResult]:
    """``model-index`` entries for the protected model: the original-domain metric, and the restricted-domain
    metric after each attack (one dataset entry, one metric per attack, told apart by ``metric_name``)."""
    results = []
    if "protected" in metadata.original and metadata.original_domain:
        results.append(EvalResult(
            task_type=metadata.task, dataset_type=metadata.original_domain,
            dataset_split=_split(metadata, "original_eval"),
            dataset_name=f"{metadata.original_domain} (original domain, no attack)", metric_type=metadata.metric,
            metric_value=metadata.original["protected"], metric_name=f"{METRIC_PREFIX}original-domain {metadata.metric}",
        ))
    restricted = ", ".join(metadata.restricted_domains)
    for name, by_role in metadata.results.items():
        if "protected" in by_role:
            results.append(EvalResult(
                task_type=metadata.task, dataset_type=restricted, dataset_split=_split(metadata, "attack_eval"),
                dataset_name=f"{restricted} (restricted domain, after each attack)", metric_type=metadata.metric,
                metric_value=by_role["protected"].mean,
                metric_name=f"{METRIC_PREFIX}restricted-domain {metadata.metric} after {name} (lower is better)",
            ))
    return results


def render_model_card(metadata: NFTMetadata, *, model_name: str, plot_file: str | None = None,
                      reproduce_command: str = "") -> ModelCard:
    """A model card for ``metadata``: YAML front matter (``library_name``, tags, the ``nft:`` block,
    ``model-index``) and a readable body (claims, results table, plot, data, how to reproduce, limitations)."""
    tags = ["hf-nft", "non-fine-tunable", metadata.method]
    card_data = ModelCardData(library_name="transformers", pipeline_tag=metadata.task, tags=tags,
                              model_name=model_name, eval_results=eval_results(metadata) or None,
                              nft=metadata.to_dict())
    specs = {spec["name"]: spec for spec in (metadata.suite or {}).get("attacks", [])}
    rows = [{"attack": name, "budget": _budget(specs[name]) if name in specs else "",
             **{role: _figure(by_role.get(role)) for role in ROLES}}
            for name, by_role in metadata.results.items()]
    headline = headline_attack(metadata)
    finals = metadata.results.get(headline, {})
    data_rows = [{"role": role, "domain": record.domain or "(custom)", "split": record.split or "",
                  "size": record.size, "fingerprint": record.fingerprint[:12]}
                 for role, record in metadata.data.items()]
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        method=metadata.method,
        original_domain=metadata.original_domain or "(unnamed)",
        restricted_domains=", ".join(metadata.restricted_domains) or "(unnamed)",
        metric=metadata.metric,
        direction="higher" if metadata.higher_is_better else "lower",
        seeds=(metadata.suite or {}).get("seeds", []),
        original_metric=_percent(metadata.original.get("protected")),
        reference_original_metric=_percent(metadata.original.get("unprotected")),
        headline=headline,
        **{f"headline_{role}": _figure(finals.get(role)) for role in ROLES},
        results=rows,
        data=data_rows,
        plot_file=plot_file,
        weights_sha256=metadata.weights_sha256 or "(not recorded)",
        versions=", ".join(f"{name} {version}" for name, version in metadata.versions.items()),
        reproduce_command=reproduce_command,
    )


def load_card(path: str | Path) -> ModelCard:
    """Read a model card file; a ``ValueError`` naming the file if its YAML front matter is broken."""
    path = Path(path)
    try:
        return ModelCard.load(path)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: the card's YAML front matter is broken ({error}).") from error
    except ValueError as error:
        raise ValueError(f"{path}: not a readable model card ({error}).") from error


def update_model_card(existing: ModelCard, rendered: ModelCard) -> ModelCard:
    """``existing`` with hf_nft's parts taken from ``rendered``: the ``nft:`` block, hf_nft's ``model-index``
    entries, its tags and its body section. Everything else the author wrote is kept."""
    data, ours = existing.data, rendered.data
    data.nft = ours.nft
    data.tags = list(dict.fromkeys([*(data.tags or []), *(ours.tags or [])]))
    data.library_name = data.library_name or ours.library_name
    data.pipeline_tag = data.pipeline_tag or ours.pipeline_tag
    kept = [r for r in (data.eval_results or []) if not (r.metric_name or "").startswith(METRIC_PREFIX)]
    data.eval_results = (kept + (ours.eval_results or [])) or None
    data.model_name = data.model_name or ours.model_name
    section = _SECTION.search(rendered.text)
    body = existing.text
    if section is None:
        raise ValueError("The rendered card has no hf_nft section (check the template's markers).")
    if _SECTION.search(body):
        body = _SECTION.sub(lambda _: section.group(0), body, count=1)
    else:
        body = body.rstrip("\n") + "\n\n" + section.group(0)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def save_protected_model_files(folder: str | Path, metadata: NFTMetadata, *, model_name: str,
                               plot: str | Path | None = None, reproduce_command: str = "",
                               ) -> NFTMetadata:
    """Beside the weights in ``folder``: ``nft_config.json`` (with the weights' hash), the plot (if given) and
    ``README.md`` (rendered, or merged into the existing card). Every file is written atomically; the card
    is read (and any broken YAML reported) before anything is written. Returns the metadata as saved."""
    folder = Path(folder)
    card_path = folder / CARD_FILE
    existing = load_card(card_path) if card_path.exists() else None
    metadata = dataclasses.replace(metadata, weights_sha256=weights_sha256(folder))
    plot_file = Path(plot).name if plot is not None else None
    card = render_model_card(metadata, model_name=model_name, plot_file=plot_file,
                             reproduce_command=reproduce_command)
    if existing is not None:
        card = update_model_card(existing, card)
    if plot is not None and Path(plot).resolve() != (folder / plot_file).resolve():
        shutil.copyfile(plot, folder / plot_file)
    metadata.save(folder)
    write_text(card_path, str(card))
    return metadata
