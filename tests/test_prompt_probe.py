"""The prompt probe: a linear probe that starts as the nearest-centroid classifier of the class prompts plus the
labelled examples, then trains as a linear probe."""

import pytest
import torch
from datasets import Dataset
from torch.nn import functional
from transformers import DataCollatorWithPadding

from hf_nft.attacks.batches import AttackData
from hf_nft.attacks.probes import head_features
from hf_nft.attacks.prompt_probe import unit_mean
from hf_nft.attacks.runner import run_attack
from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import tokenize_text_dataset
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer

WORDS = ["film", "plot", "cast", "story", "scene", "ending", "script", "actor"]
PROMPTS = [["awful dreadful"], ["lovely splendid"]]


def reviews(count: int, seed: int) -> Dataset:
    """Label 1 texts carry a word of the second prompt, label 0 texts one of the first, amid neutral words."""
    generator = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for i in range(count):
        label = i % 2
        neutral = [WORDS[j] for j in torch.randint(len(WORDS), (4,), generator=generator).tolist()]
        cue = PROMPTS[label][0].split()[int(torch.randint(2, (1,), generator=generator))]
        texts.append(" ".join(neutral[:2] + [cue] + neutral[2:]))
        labels.append(label)
    return Dataset.from_dict({"text": texts, "labels": labels})


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    train, test = reviews(40, seed=1), reviews(60, seed=2)
    tokenizer = word_tokenizer(WORDS + " ".join(p[0] for p in PROMPTS).split(), vocab_size=40)
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return {"train": tokenize_text_dataset(train, tokenizer, 16), "test": tokenize_text_dataset(test, tokenizer, 16),
            "collate": DataCollatorWithPadding(tokenizer), "tokenizer": tokenizer, "folder": str(folder)}


def spec(setting, prompts=PROMPTS, **changes) -> AttackSpec:
    values = {"kind": "prompt_probe", "learning_rate": 1e-9, "steps": 1, "eval_every": 1, "examples_per_class": 1,
              "options": {"prompts": prompts, "tokenizer": setting["folder"]}} | changes
    return AttackSpec(**values)


def model():
    return tiny_bert_classifier(40, num_labels=2, mean_pooling=True, seed=3)


def test_it_starts_as_the_nearest_centroid_classifier_of_prompts_plus_examples(setting):
    run = run_attack(model(), spec(setting), setting["train"], setting["test"], collate_fn=setting["collate"],
                     return_model=True)
    # The same classifier computed by hand from the unattacked model's features.
    reference = model()
    batch = setting["collate"]([setting["test"][i] for i in range(len(setting["test"]))])
    test_features = head_features(reference, [batch], torch.device("cpu"))[0]["features"]
    chosen = AttackData(setting["train"], setting["test"], setting["collate"]).budget(1, 0)
    chosen_batch = chosen.chunks(len(chosen))[0]
    support_features = head_features(reference, [chosen_batch], torch.device("cpu"))[0]["features"]
    directions = []
    for label, texts in enumerate(PROMPTS):
        prompt_batch = dict(setting["tokenizer"](texts, padding=True, return_tensors="pt"))
        prompt_batch["labels"] = torch.zeros(len(texts), dtype=torch.long)
        prompt_features = head_features(reference, [prompt_batch], torch.device("cpu"))[0]["features"]
        directions.append(unit_mean(prompt_features) + unit_mean(support_features[chosen_batch["labels"] == label]))
    expected = (functional.normalize(test_features, dim=-1) @ torch.stack(directions).T).argmax(-1)
    accuracy = float((expected == batch["labels"]).float().mean())
    assert run.final == pytest.approx(accuracy)
    assert accuracy >= 0.7  # the prompts name the cue words: even a random encoder reads them, from one example


def test_the_prompts_carry_the_task(setting):
    right = run_attack(model(), spec(setting), setting["train"], setting["test"], collate_fn=setting["collate"])
    swapped = run_attack(model(), spec(setting, prompts=PROMPTS[::-1]), setting["train"], setting["test"],
                         collate_fn=setting["collate"])
    assert right.final >= swapped.final + 0.2


@pytest.mark.parametrize("options, message", [
    ({"tokenizer": "x"}, "prompts must be a list"),
    ({"prompts": [["a"], []], "tokenizer": "x"}, "prompts must be a list"),
    ({"prompts": [["a"]], "tokenizer": "x"}, "at least 2 classes"),
    ({"prompts": PROMPTS}, "tokenizer must be"),
    ({"prompts": PROMPTS, "tokenizer": "x", "max_length": 0}, "max_length must be"),
    ({"prompts": PROMPTS, "tokenizer": "x", "rank": 4}, "Unknown option"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        AttackSpec(kind="prompt_probe", options=options)


def test_prompts_for_another_label_space_are_refused(setting):
    three = spec(setting, prompts=PROMPTS + [["neutral film"]])
    with pytest.raises(ValueError, match="3 classes of prompts for a model with 2 labels"):
        run_attack(model(), three, setting["train"], setting["test"], collate_fn=setting["collate"])
