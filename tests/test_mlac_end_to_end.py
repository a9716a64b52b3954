"""A fast end-to-end MLAC run on a tiny BERT: after the same attack, the blocked model is worse on the harmful
task than the unprotected one, and keeps its desired task."""

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from hf_nft import NFTConfig, NFTTrainer
from hf_nft.attacks.runner import run_attack
from hf_nft.attacks.spec import AttackSpec
from hf_nft.data import load_text_domain, per_class_subset, tokenize_text_dataset
from hf_nft.text_models import tiny_bert_classifier, word_tokenizer


def _accuracy(model, data, collator):
    model.eval()
    with torch.no_grad():
        batch = collator([data[i] for i in range(len(data))])
        labels = batch.pop("labels")
        return float((model(**batch).logits.argmax(-1) == labels).float().mean())


def test_blocked_tiny_bert_is_worse_than_unprotected_on_the_harmful_task_after_the_same_attack(tmp_path):
    torch.manual_seed(0)
    # harmful: what kind of text (lexical, learnable by a tiny model); desired: convention vs debate.
    harmful_train = per_class_subset(load_text_domain("text-genres", "train"), 60)
    harmful_test = per_class_subset(load_text_domain("text-genres", "test"), 30)
    desired = load_text_domain("us-politics", "train", task="setting")
    desired_train, desired_test = per_class_subset(desired, 60), per_class_subset(desired, 30, seed=1)
    tokenizer = word_tokenizer(harmful_train[:]["text"] + desired_train[:]["text"], vocab_size=600)
    h_train, h_test, d_train, d_test = (tokenize_text_dataset(d, tokenizer, 24)
                                        for d in (harmful_train, harmful_test, desired_train, desired_test))
    collator = DataCollatorWithPadding(tokenizer)
    common = {"report_to": [], "save_strategy": "no", "use_cpu": True, "disable_tqdm": True, "seed": 0,
              "per_device_train_batch_size": 16}

    # "pre-training": the encoder learns the harmful task, then the desired task on top (the unprotected model)
    pretrained = tiny_bert_classifier(len(tokenizer), num_labels=4, hidden_size=32)
    Trainer(model=pretrained, args=TrainingArguments(output_dir=str(tmp_path / "pre"), learning_rate=3e-3,
                                                     num_train_epochs=6, **common),
            train_dataset=h_train, data_collator=collator).train()
    unprotected = tiny_bert_classifier(len(tokenizer), num_labels=2, hidden_size=32)
    unprotected.bert.load_state_dict(pretrained.bert.state_dict())
    Trainer(model=unprotected, args=TrainingArguments(output_dir=str(tmp_path / "ft"), learning_rate=1e-3,
                                                      num_train_epochs=6, **common),
            train_dataset=d_train, data_collator=collator).train()

    def protect(harmful_weight):  # MLAC's learned terms alone: the embedding erasure is tested on its own
        model = tiny_bert_classifier(len(tokenizer), num_labels=2, hidden_size=32)
        model.load_state_dict(unprotected.state_dict())
        args = NFTConfig(output_dir=str(tmp_path / "blocked"), nft_method="mlac", learning_rate=1e-3, max_steps=60,
                         inner_steps=2, adversary_batch_sizes=[16], query_batch_size=16, mlac_adversary_lr=3e-3,
                         mlac_harmful_weight=harmful_weight, mlac_linear_weight=0.15 * harmful_weight,
                         mlac_distill_weight=1.0, mlac_erasure_rounds=0, guard_every=0,
                         **common)
        NFTTrainer(model=model, args=args, train_dataset=d_train, restricted_dataset=h_train,
                   data_collator=collator, processing_class=tokenizer).train()
        return model

    # the control takes the same 60 steps on the desired task with the harmful terms off: more fine-tuning alone
    blocked, control = protect(1.0), protect(0.0)

    spec = AttackSpec(kind="linear_probe", optimizer="adam", learning_rate=1e-2, reset_head=True, steps=100,
                      batch_size=16, eval_every=100, examples_per_class=20)
    after = {}
    for name, model in (("unprotected", unprotected), ("control", control), ("blocked", blocked)):
        attacked = tiny_bert_classifier(len(tokenizer), num_labels=4, hidden_size=32)
        attacked.bert.load_state_dict(model.bert.state_dict())
        after[name] = run_attack(attacked, spec, h_train, h_test, collate_fn=collator).final
    assert after["unprotected"] >= 0.4, after  # chance is 0.25: the unprotected encoder carries the harmful task
    assert after["blocked"] < after["unprotected"] - 0.1, after
    assert after["blocked"] < after["control"] - 0.1, after  # the drop is MLAC's, not the extra fine-tuning's
    kept = {name: _accuracy(model, d_test, collator) for name, model in (("unprotected", unprotected), ("blocked", blocked))}
    assert kept["blocked"] >= kept["unprotected"] - 0.1, kept
