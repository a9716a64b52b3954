"""NFTTrainer: a drop-in `transformers.Trainer` that trains a protection method instead of the plain loss."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import RandomSampler
from transformers import Trainer, TrainingArguments

import hf_nft.methods  # noqa: F401  (registers the built-in methods)
from hf_nft.config import NFTConfig
from hf_nft.fingerprints import weights_sha256
from hf_nft.guard import OriginalTaskGuard
from hf_nft.hub import save_protected_model_files
from hf_nft.metadata import DataRecord, NFTMetadata, pipeline_task
from hf_nft.methods.base import ProtectionMethod
from hf_nft.registry import METHODS
from hf_nft.upload import push_folder

# Restricted examples drawn (with replacement) before the sampler is rebuilt; it is rebuilt forever.
_RESTRICTED_SAMPLES_PER_PASS = 100_000


class NFTTrainer(Trainer):
    """``Trainer`` whose training objective is a protection method (``args.nft_method``, SOPHON by default).

    Use it as a ``Trainer``, plus ``restricted_dataset`` (data of the domain the model must not be adaptable to)
    and optionally ``restricted_eval_dataset`` (then ``evaluate()`` also reports ``eval_restricted_*``). A plain
    ``TrainingArguments`` is upgraded to an :class:`NFTConfig` with default protection settings. The model, the
    datasets and the settings are validated here, before any training starts.
    """

    def __init__(
        self,
        model: Any = None,
        args: TrainingArguments | None = None,
        *trainer_args: Any,
        restricted_dataset: Any = None,
        restricted_eval_dataset: Any = None,
        **trainer_kwargs: Any,
    ) -> None:
        if args is None:
            args = NFTConfig(output_dir="nft_output")
        elif not isinstance(args, NFTConfig):
            args = NFTConfig.from_training_arguments(args)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        self.restricted_dataset = restricted_dataset
        self.restricted_eval_dataset = restricted_eval_dataset
        self.loss_is_scaled_for_ga = False
        self.method: ProtectionMethod = METHODS.get(self.args.nft_method)(self)
        self.method.validate()
        self._nft_metrics: dict[str, list[float]] = defaultdict(list)
        self.guard: OriginalTaskGuard | None = None
        if self.args.guard_every > 0 and self.eval_dataset is not None and not isinstance(self.eval_dataset, dict):
            guard_data = self.eval_dataset
            if hasattr(guard_data, "select") and len(guard_data) > self.args.guard_examples:
                guard_data = guard_data.select(range(self.args.guard_examples))
            self.guard = OriginalTaskGuard(guard_data, self.args.guard_every, self.args.guard_tolerance,
                                           collate_fn=self.data_collator)
            self.add_callback(self.guard)

    def compute_loss(
        self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The protection method's loss in training; the model's plain loss in evaluation."""
        if return_outputs or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, metrics = self.method.training_loss(model, inputs)
        for key, value in metrics.items():
            self._nft_metrics[key].append(value)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Merge the method's averaged metrics into the Trainer's training logs."""
        if "loss" in logs and self._nft_metrics:
            logs.update({key: sum(values) / len(values) for key, values in self._nft_metrics.items()})
            self._nft_metrics.clear()
        super().log(logs, start_time)

    def restricted_batches(self) -> Iterator[dict[str, Any]]:
        """An endless stream of collated, device-placed restricted batches of ``args.restricted_batch_size``."""
        generator = torch.Generator().manual_seed(self.args.seed)

        def sampler(dataset: Any) -> RandomSampler:
            return RandomSampler(dataset, replacement=True, num_samples=_RESTRICTED_SAMPLES_PER_PASS,
                                 generator=generator)

        while True:
            loader = self._get_dataloader(self.restricted_dataset, "restricted", self.args.restricted_batch_size,
                                          sampler_fn=sampler, is_training=True)
            for batch in loader:
                yield self._prepare_inputs(batch)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """``Trainer.evaluate``, plus the restricted domain (``{prefix}_restricted_*``) when it was given."""
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if eval_dataset is None and self.restricted_eval_dataset is not None:
            metrics.update(super().evaluate(self.restricted_eval_dataset, ignore_keys,
                                            f"{metric_key_prefix}_restricted"))
        return metrics

    def protection_metadata(self) -> NFTMetadata:
        """Protection metadata for the model as trained: the method, its settings and the data it was protected
        with (no attack results yet: add them with ``NFTMetadata.with_report``)."""
        data = {"protection_original": DataRecord.of(self.train_dataset)} if self.train_dataset is not None else {}
        if self.restricted_dataset is not None:
            data["protection_restricted"] = DataRecord.of(self.restricted_dataset)
        original, restricted = data.get("protection_original"), data.get("protection_restricted")
        return NFTMetadata(
            method=self.method.name, settings=self.method.settings(),
            original_domain=original.domain if original else None,
            restricted_domains=[restricted.domain] if restricted and restricted.domain else [],
            data=data, task=pipeline_task(self.accelerator.unwrap_model(self.model)),
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model`` (also what every checkpoint calls), plus ``nft_config.json`` beside the weights:
        the protection metadata with the hash of the weights just saved."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            folder = output_dir if output_dir is not None else self.args.output_dir
            metadata = self.protection_metadata()
            metadata.weights_sha256 = weights_sha256(folder)
            metadata.save(folder)

    def create_model_card(self, model_name: str | None = None, metadata: NFTMetadata | None = None,
                          plot: str | None = None, reproduce_command: str = "", **_: Any) -> None:
        """Write (or update) ``README.md`` and ``nft_config.json`` in ``args.output_dir`` from ``metadata``
        (default: :meth:`protection_metadata`, without attack results); ``plot`` is copied beside them and
        embedded. Trainer's other card arguments are accepted and ignored."""
        if not self.is_world_process_zero():
            return
        save_protected_model_files(
            self.args.output_dir, metadata or self.protection_metadata(),
            model_name=model_name or Path(self.args.output_dir).absolute().name, plot=plot,
            reproduce_command=reproduce_command,
        )

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None,
                    **kwargs: Any) -> Any:
        """Save the model, write its card (``kwargs`` go to :meth:`create_model_card`) and upload the
        publishable files of ``args.output_dir`` to ``args.hub_model_id`` (default: the folder's name)."""
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**kwargs)
        return push_folder(
            self.args.output_dir, self.args.hub_model_id or Path(self.args.output_dir).absolute().name,
            private=self.args.hub_private_repo if private is None else private,
            revision=revision or self.args.hub_revision, token=token or self.args.hub_token,
            commit_message=commit_message or "Upload protected model (hf_nft)", run_as_future=not blocking,
        )
