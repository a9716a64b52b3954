"""PEFT adapters through ``peft``: LoRA (``lora``) and any other peft method by name (``peft``).

Target modules default to the attention query/value projections of transformers (ViT ``q_proj/v_proj``,
BERT ``query/value``, DistilBERT ``q_lin/v_lin``), else every ungrouped convolution and every linear layer
but the head (ResNets, ConvNeXts and other CNNs). The classification head always trains (peft ``modules_to_save``).
"""

from __future__ import annotations

import difflib
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from peft import LoraConfig, PeftConfig, PeftType, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from torch import nn

from hf_nft.attacks.base import Adaptation, Attack, reset_head_if_asked
from hf_nft.attacks.batches import AttackData
from hf_nft.modeling import classifier_head
from hf_nft.registry import ATTACKS

ATTENTION_TARGETS = (("q_proj", "v_proj"), ("query", "value"), ("q_lin", "v_lin"))


def default_target_modules(model: nn.Module) -> list[str]:
    """Sensible adapter targets for ``model`` (see the module docstring)."""
    head = classifier_head(model)[0]
    body = [(name, module) for name, module in model.named_modules() if not (name + ".").startswith(f"{head}.")]
    linear_leaves = {name.rsplit(".", 1)[-1] for name, module in body if isinstance(module, nn.Linear)}
    for pair in ATTENTION_TARGETS:
        if set(pair) <= linear_leaves:
            return list(pair)
    # Grouped (depthwise) convolutions are left out: peft's LoRA needs the rank divisible by the groups.
    convolutions = [name for name, module in body if isinstance(module, nn.Conv2d) and module.groups == 1]
    linears = [name for name, module in body if isinstance(module, nn.Linear)]
    if not convolutions and not linears:
        raise ValueError(f"{type(model).__name__} has no linear or convolution layer to attach an adapter to.")
    return convolutions + linears


class _Adapter(Attack):
    """Train an adapter (and the head) with peft; the base weights stay frozen."""

    @abstractmethod
    def peft_config(self, targets: list[str] | str, head: str) -> PeftConfig:
        """The peft configuration adapting ``targets`` and training the head module ``head``."""

    def targets(self, model: nn.Module) -> list[str] | str:
        """The ``target_modules`` option, or :func:`default_target_modules`."""
        return self.options["target_modules"] or default_target_modules(model)

    def config_for(self, model: nn.Module) -> PeftConfig:
        """The peft configuration for ``model``; a ``ValueError`` if peft rejects the settings."""
        try:
            return self.peft_config(self.targets(model), classifier_head(model)[0])
        except TypeError as error:
            raise ValueError(f"Attack {self.spec.name!r}: invalid peft settings: {error}") from error

    def check_model(self, model: nn.Module) -> None:
        self.config_for(model)

    def prepare(self, model: nn.Module, data: AttackData, device: torch.device) -> Adaptation:
        reset_head_if_asked(model, self.spec)
        config = self.config_for(model)
        try:
            adapted = get_peft_model(model, config).to(device)
        except ValueError as error:
            raise ValueError(f"Attack {self.spec.name!r}: peft cannot adapt {type(model).__name__}: {error}") from error
        return self.whole_model(adapted, data, device)


@ATTACKS.register("lora")
class LoRA(_Adapter):
    """LoRA of rank ``rank`` (scaling ``alpha / rank``) on ``target_modules``."""

    option_defaults: ClassVar[dict[str, Any]] = {"rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": None}

    def peft_config(self, targets: list[str] | str, head: str) -> PeftConfig:
        options = self.options
        return LoraConfig(
            r=options["rank"],
            lora_alpha=options["alpha"],
            lora_dropout=options["dropout"],
            target_modules=targets,
            modules_to_save=[head],
        )


def peft_type(method: str) -> PeftType:
    """The peft method called ``method`` (case-insensitive, e.g. ``"loha"``, ``"ia3"``)."""
    known = {peft_type.value.lower(): peft_type for peft_type in PEFT_TYPE_TO_CONFIG_MAPPING}
    if not isinstance(method, str) or method.lower() not in known:
        close = difflib.get_close_matches(str(method).lower(), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown peft method {method!r}.{hint} Known: {sorted(known)}.")
    return known[method.lower()]


@ATTACKS.register("peft")
class PeftMethod(_Adapter):
    """Any peft method by name (``method``), its config class given ``config`` as extra keyword arguments."""

    option_defaults: ClassVar[dict[str, Any]] = {"method": "loha", "config": {}, "target_modules": None}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        super().check_options(options)
        peft_type(options.get("method", cls.option_defaults["method"]))

    def peft_config(self, targets: list[str] | str, head: str) -> PeftConfig:
        config_class = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type(self.options["method"])]
        return config_class(target_modules=targets, modules_to_save=[head], **self.options["config"])
