"""Bypasses of the text quickstart's MLAC blocking that the simulated adversary never saw.

    python benchmarks/text_bypass.py runs/quickstart/text

For the unprotected (``OUTPUT/unprotected``), blocked (``OUTPUT/blocked``) and random-init MiniLM encoders,
prints the harmful-task (review sentiment) accuracy on the class-balanced test examples of the quickstart after:

- ``mean-pool-probe``: a logistic regression (scikit-learn, L2, C=1) on the *mean of the last layer's token
  states*, not the pooler output MLAC trained against;
- ``layer-k-probe``: the same probe on the mean token state of an intermediate layer (k = 3), which the blocked
  model's lower layers (frozen during blocking) still compute as MiniLM did;
- ``reinit-top-2``: the top two transformer layers and the pooler re-initialised, then full fine-tuning
  (Adam 1e-4, 30 steps, batch 16) with a fresh head: keep the generic lower features, drop what MLAC put on top.
Each with 20 and 200 labelled harmful examples (class-balanced).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from hf_nft.attacks.runner import run_attack
from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_text_domain, per_class_subset, tokenize_text_dataset
from hf_nft.text_models import load_minilm_classifier, load_minilm_tokenizer
from hf_nft.text_quickstart import HARMFUL, TextQuickstartSettings, _harmful_classifier

BUDGETS = (20, 200)
PROBE_LAYER = 3


def mean_states(model: torch.nn.Module, texts: list[str], tokenizer, layer: int | None) -> np.ndarray:
    """Mean token state of ``layer`` (the last when ``None``) for each text."""
    rows = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start:start + 64], truncation=True, max_length=48, padding=True,
                              return_tensors="pt")
            out = model.base_model(**batch, output_hidden_states=True)
            states = out.hidden_states[layer] if layer is not None else out.last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            rows.append(((states * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(rows)


def reinit_top(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    for layer in model.base_model.encoder.layer[-layers:]:
        layer.apply(model.base_model._init_weights)
    model.base_model.pooler.apply(model.base_model._init_weights)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="The text quickstart's output folder (with unprotected/ and blocked/).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = TextQuickstartSettings()
    tokenizer = load_minilm_tokenizer()
    train = load_text_domain(HARMFUL[0], "train", task=HARMFUL[1]).shuffle(seed=args.seed)
    pool = train.select(range(settings.block_pool, len(train)))
    test = per_class_subset(load_text_domain(HARMFUL[0], "test", task=HARMFUL[1]), settings.harmful_eval // 2,
                            args.seed)
    encoders = {
        "unprotected": AutoModelForSequenceClassification.from_pretrained(Path(args.output) / "unprotected"),
        "blocked": AutoModelForSequenceClassification.from_pretrained(Path(args.output) / "blocked"),
        "scratch": load_minilm_classifier(2, pretrained=False, seed=args.seed),
    }
    collator = DataCollatorWithPadding(tokenizer)
    results: dict[str, dict[str, float]] = {}
    for name, model in encoders.items():
        for budget in BUDGETS:
            subset = per_class_subset(pool, budget // 2, args.seed)
            y_train, y_test = np.asarray(subset[:]["labels"]), np.asarray(test[:]["labels"])
            for label, layer in (("mean-pool-probe", None), (f"layer-{PROBE_LAYER}-probe", PROBE_LAYER)):
                x_train = mean_states(model, subset[:]["text"], tokenizer, layer)
                x_test = mean_states(model, test[:]["text"], tokenizer, layer)
                probe = LogisticRegression(max_iter=2000).fit(x_train, y_train)
                results.setdefault(name, {})[f"{label}@{budget}"] = float(probe.score(x_test, y_test))
            attacked = reinit_top(_harmful_classifier(None if name == "scratch" else model, args.seed), 2)
            spec = AttackSpec(kind="full_finetune", optimizer="adam", learning_rate=1e-4, reset_head=True, steps=30,
                              batch_size=16, eval_every=30, examples_per_class=budget // 2, seed=args.seed)
            run = run_attack(attacked, spec, tokenize_text_dataset(pool, tokenizer, 48),
                             tokenize_text_dataset(test, tokenizer, 48), collate_fn=collator)
            results[name][f"reinit-top-2@{budget}"] = run.final
        print(name, json.dumps({key: round(value, 3) for key, value in results[name].items()}))


if __name__ == "__main__":
    main()
