"""Read-outs of the text EncoderLock runs that the lock never trained against.

    python benchmarks/encoderlock_text_bypasses.py runs/text-encoderlock

For the unprotected (``OUTPUT/unprotected``), each locked (``OUTPUT/text-encoderlock-SETTING/locked``) and a
random-init MiniLM, prints the prohibited-task (``us-politics`` party) test accuracy of a logistic regression
(scikit-learn, L2, C=1) trained on 100 labelled examples per class of the lock's own training split, read from:

- ``pooler``: the pooler output the lock's challengers probe (the harness's probes read the same features);
- ``mean-pool``: the mean of the last layer's token states (how sentence-transformers pools MiniLM);
- ``layer-3``: the mean token state of the third layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from text_bypass import mean_states
from transformers import AutoModelForSequenceClassification

from hf_nft.data import load_text_domain, per_class_subset
from hf_nft.encoderlock_text import PROHIBITED
from hf_nft.text_models import load_minilm_classifier, load_minilm_tokenizer

EXAMPLES_PER_CLASS = 100
READOUTS = {"pooler": "pooler", "mean-pool": None, "layer-3": 3}


def pooler_states(model: torch.nn.Module, texts: list[str], tokenizer) -> np.ndarray:
    """The pooler output (what a classification head reads) for each text."""
    rows = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start:start + 64], truncation=True, max_length=64, padding=True,
                              return_tensors="pt")
            rows.append(model.base_model(**batch).pooler_output.numpy())
    return np.concatenate(rows)


def readout_accuracy(model: torch.nn.Module, tokenizer, train: dict, test: dict, readout: str | int | None) -> float:
    """Test accuracy of a logistic regression on ``readout`` features of ``model``."""
    def features(texts: list[str]) -> np.ndarray:
        if readout == "pooler":
            return pooler_states(model, texts, tokenizer)
        return mean_states(model, texts, tokenizer, readout)

    probe = LogisticRegression(max_iter=2000).fit(features(train["text"]), train["labels"])
    return float(probe.score(features(test["text"]), test["labels"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="The --output folder of recipes/lock_text_encoder.py.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_minilm_tokenizer()
    pool = load_text_domain(PROHIBITED[0], "train", task=PROHIBITED[1]).shuffle(seed=0).select(range(1000))
    train = per_class_subset(pool, EXAMPLES_PER_CLASS).with_format(None)[:]
    test = load_text_domain(PROHIBITED[0], "test", task=PROHIBITED[1]).shuffle(seed=0).select(range(400))[:]
    models = {"unprotected": AutoModelForSequenceClassification.from_pretrained(args.output / "unprotected")}
    for locked in sorted(args.output.glob("text-encoderlock-*/locked")):
        models[locked.parent.name.removeprefix("text-encoderlock-")] = (
            AutoModelForSequenceClassification.from_pretrained(locked))
    models["random-init"] = load_minilm_classifier(2, pretrained=False)
    print(f"{'encoder':<14}" + "".join(f"{name:>11}" for name in READOUTS))
    for name, model in models.items():
        scores = [readout_accuracy(model, tokenizer, train, test, readout) for readout in READOUTS.values()]
        print(f"{name:<14}" + "".join(f"{score:>11.3f}" for score in scores))


if __name__ == "__main__":
    main()
