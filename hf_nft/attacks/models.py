"""Loading and checking the classifiers that attacks run on."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from hf_nft import text_pooling  # noqa: F401  (registers the mean-pooled BERT classifier with the Auto classes)
from hf_nft.modeling import classifier_head

AUTO_CLASSES = (AutoModelForImageClassification, AutoModelForSequenceClassification)


def auto_class(config: PretrainedConfig, class_name: str | None = None) -> type:
    """The ``AutoModelFor*Classification`` class that builds ``class_name`` (default: the config's own)."""
    class_name = class_name or (config.architectures or [None])[0]
    for auto in AUTO_CLASSES:
        mapping = auto._model_mapping
        if type(config) in mapping and (class_name is None or mapping[type(config)].__name__ == class_name):
            return auto
    kinds = " or ".join(auto.__name__ for auto in AUTO_CLASSES)
    what = class_name or f"a {type(config).__name__} model"
    raise ValueError(f"{what} is not a classifier: expected a model loadable with {kinds}.")


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_classifier(model: PreTrainedModel | str | Path, device: torch.device | str | None = None) -> PreTrainedModel:
    """``model`` itself (where it is), or the classifier saved in directory ``model``, loaded onto ``device``
    (default: :func:`default_device`); a ``ValueError`` if it is not a classifier."""
    if isinstance(model, nn.Module):
        classifier_head(model)
        return model
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a model directory (no config.json).")
    config = AutoConfig.from_pretrained(path)
    loaded = auto_class(config).from_pretrained(path)
    classifier_head(loaded)
    return loaded.to(device or default_device())


def check_label_count(model: nn.Module, labels: int, what: str) -> None:
    """Raise a ``ValueError`` unless the model's head has exactly ``labels`` outputs."""
    outputs = classifier_head(model)[1].out_features
    if outputs != labels:
        raise ValueError(
            f"The {what} has {labels} classes but the model's classification head has {outputs} outputs: "
            "the labels do not fit this model."
        )
