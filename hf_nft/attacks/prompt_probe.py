"""A linear probe that starts from what the labels mean: the attacker who knows the class names of a sentence
encoder's task.

Each class's weight row starts as the direction of its label prompts' features plus the direction of its labelled
examples' features (both the input of the model's own classification head, rows scaled to unit length and
averaged), so before any step the probe is a nearest-centroid classifier in cosine with the prompts as a prior:
with a pre-trained sentence encoder, descriptions of the classes alone read a task far better than a handful of
labelled examples do. The spec's optimizer then trains it as a linear probe.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional

from hf_nft.attacks.base import Adaptation
from hf_nft.attacks.batches import AttackData
from hf_nft.attacks.probes import LinearProbe, head_features
from hf_nft.modeling import classifier_head
from hf_nft.registry import ATTACKS

# Logits start at this multiple of the cosine between a text's features and a class direction.
COSINE_SCALE = 10.0


def unit_mean(features: torch.Tensor) -> torch.Tensor:
    """The mean direction of the rows of ``features`` (each scaled to unit length, averaged, unit length)."""
    return functional.normalize(functional.normalize(features, dim=-1).mean(dim=0), dim=0)


@ATTACKS.register("prompt_probe")
class PromptProbe(LinearProbe):
    """``prompts``: one list of texts per class (class order); ``tokenizer``: a path or name for
    ``AutoTokenizer.from_pretrained`` that tokenises them as the model expects; ``max_length``: their token limit."""

    option_defaults: ClassVar[dict[str, Any]] = {"prompts": None, "tokenizer": None, "max_length": 64}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        super().check_options(options)
        prompts = options.get("prompts")
        if (not isinstance(prompts, list | tuple) or len(prompts) < 2 or not all(
                isinstance(texts, list | tuple) and texts and all(isinstance(t, str) and t for t in texts)
                for texts in prompts)):
            raise ValueError("prompt_probe: prompts must be a list with one non-empty list of non-empty texts per "
                             f"class (at least 2 classes), got {prompts!r}.")
        if not isinstance(options.get("tokenizer"), str) or not options["tokenizer"]:
            raise ValueError(f"prompt_probe: tokenizer must be a tokenizer path or name, got "
                             f"{options.get('tokenizer')!r}.")
        length = options.get("max_length", cls.option_defaults["max_length"])
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"prompt_probe: max_length must be a positive integer, got {length!r}.")

    def check_model(self, model: nn.Module) -> None:
        classes = classifier_head(model)[1].out_features
        if classes != len(self.options["prompts"]):
            raise ValueError(f"prompt_probe: {len(self.options['prompts'])} classes of prompts for a model with "
                             f"{classes} labels.")

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        adaptation = super().prepare(model, data, device)
        support = adaptation.train.chunks(len(adaptation.train))[0]
        prompt_features = self._prompt_features(model, device)
        directions = []
        for label, features in enumerate(prompt_features):
            direction = unit_mean(features)
            examples = support["features"][support["labels"] == label]
            if len(examples):
                direction = direction + unit_mean(examples)
            directions.append(direction)
        head = adaptation.module
        with torch.no_grad():
            scale = COSINE_SCALE / support["features"].norm(dim=-1).mean().clamp_min(1e-12)
            head.weight.copy_(functional.normalize(torch.stack(directions), dim=-1).to(head.weight) * scale)
            head.bias.zero_()
        return adaptation

    def _prompt_features(self, model: nn.Module, device: torch.device) -> list[torch.Tensor]:
        """For each class, the input of ``model``'s classification head for each of its prompts."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.options["tokenizer"])
        batches = []
        for texts in self.options["prompts"]:
            batch = dict(tokenizer(list(texts), padding=True, truncation=True, max_length=self.options["max_length"],
                                   return_tensors="pt"))
            batches.append(batch | {"labels": torch.zeros(len(texts), dtype=torch.long)})
        return [batch["features"] for batch in head_features(model, batches, device)]
