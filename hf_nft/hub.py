"""Model cards for protected models, rendered from the packaged template by a pure function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).parent / "templates" / "nft_model_card.md"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_model_card(
    *,
    model_name: str,
    settings: dict[str, Any],
    original_domain: str,
    restricted_domain: str,
    report: Any,
    plot_file: str = "curves.png",
    reproduce_command: str = "hf-nft quickstart",
) -> ModelCard:
    """A model card (YAML metadata with an ``nft:`` block, plus a readable body) for a protected model.

    ``report`` is a :class:`~hf_nft.evaluation.report.ProtectionReport`; ``settings`` the method's settings.
    """
    headline = report.headline
    finals = {role: headline[role]["mean"] for role in report.roles if role in headline}
    original = report.original
    nft_block = {
        "method": settings.get("method"),
        "original_domain": original_domain,
        "restricted_domains": [restricted_domain],
        "settings": settings,
        "headline_attack": headline.get("attack"),
        "restricted_metric_after_strongest_attack": finals,
        "original_metric": original,
    }
    card_data = ModelCardData(
        library_name="transformers",
        tags=["hf-nft", "non-fine-tunable", str(settings.get("method"))],
        model_name=model_name,
        nft=nft_block,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        method=settings.get("method"),
        original_domain=original_domain,
        restricted_domain=restricted_domain,
        original_metric=_percent(original.get("protected")),
        reference_original_metric=_percent(original.get("unprotected")),
        headline_attack=headline.get("attack"),
        headline_protected=_percent(finals.get("protected")),
        headline_unprotected=_percent(finals.get("unprotected")),
        headline_scratch=_percent(finals.get("scratch")),
        results_table=report.table(),
        plot_file=plot_file,
        settings_json=json.dumps(settings, indent=2, default=str),
        reproduce_command=reproduce_command,
    )
