"""NFTConfig: `transformers.TrainingArguments` plus the settings of the protection method."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from transformers import TrainingArguments

from hf_nft.losses import NFT_LOSS_FUNCTIONS
from hf_nft.optimizers import check_optimizer_name

NFT_LOSSES = tuple(NFT_LOSS_FUNCTIONS)


# Every optimizer of the attack harness, at learning rates up to ~10x what attacks use: a K-step simulation at a
# high rate moves the weights about as far as a much longer attack at a low one, so a short simulated horizon
# stands in for the hundreds of steps a real attacker takes.
DEFAULT_ADVERSARY_POOL = [
    "sgd:0.1",
    "sgd:0.3",
    "sgd_momentum:0.03",
    "sgd_momentum:0.1",
    "nesterov:0.05",
    "adam:0.001",
    "adam:0.003",
    "adam:0.01",
    "adamw:0.003",
    "rmsprop:0.001",
    "adagrad:0.05",
    "adadelta:3.0",
]


def parse_adversary(entry: str) -> tuple[str, float]:
    """Split an adversary pool entry ``"optimizer:learning_rate"`` and validate both parts."""
    name, sep, lr_text = entry.partition(":")
    if not sep:
        raise ValueError(f"Adversary pool entry {entry!r} must look like 'optimizer:learning_rate', e.g. 'adam:1e-3'.")
    check_optimizer_name(name)
    try:
        lr = float(lr_text)
    except ValueError as error:
        raise ValueError(f"Adversary pool entry {entry!r}: learning rate {lr_text!r} is not a number.") from error
    if lr <= 0:
        raise ValueError(f"Adversary pool entry {entry!r}: the learning rate must be positive.")
    return name, lr


# MAP (nft_method="map"): what each setting may use, see hf_nft/methods/mask_pruning.py.
MAP_SETTINGS = ("source-available", "source-free", "data-free")
# EncoderLock (nft_method="encoderlock"): what the owner has of the prohibited domain, see
# hf_nft/methods/encoderlock.py.
ENCODERLOCK_SETTINGS = ("supervised", "unsupervised", "zero-shot")


@dataclass
class NFTConfig(TrainingArguments):
    """Training arguments of an :class:`~hf_nft.NFTTrainer`.

    Every ``TrainingArguments`` field keeps its meaning (``learning_rate`` is the outer, protecting optimizer's);
    the fields below configure the protection method (SOPHON by default).
    """

    nft_method: str = field(default="sophon", metadata={"help": "Protection method, a name in hf_nft.registry.METHODS."})
    nft_loss: str = field(
        default="kl_uniform",
        metadata={"help": f"Non-fine-tunable loss on the restricted domain, one of {NFT_LOSSES}."},
    )
    alpha: float = field(default=1.0, metadata={"help": "Weight of the fine-tuning suppression (FTS) loss."})
    beta: float = field(default=1.0, metadata={"help": "Weight of the normal-training reinforcement (NTR) loss."})
    fts_steps: int = field(default=1, metadata={"help": "Suppression steps per alternation cycle."})
    ntr_steps: int = field(default=1, metadata={"help": "Reinforcement steps per alternation cycle."})
    inner_steps: int = field(
        default=8, metadata={"help": "K: simulated fine-tuning steps per suppression step (first-order MAML)."}
    )
    adversary_pool: list[str] = field(
        default_factory=lambda: list(DEFAULT_ADVERSARY_POOL),
        metadata={"help": "Simulated fine-tuning strategies as 'optimizer:learning_rate'; one is drawn per step."},
    )
    adversary_batch_sizes: list[int] = field(
        default_factory=lambda: [16, 32],
        metadata={"help": "Batch sizes the simulated adversary draws from, one per simulated fine-tuning."},
    )
    head_reset_probability: float = field(
        default=0.5,
        metadata={"help": "Probability that a simulated adversary re-initialises the classification head first "
                          "(sophon_diffusion: the UNet's output norm and convolution)."},
    )
    query_batch_size: int = field(
        default=32, metadata={"help": "Restricted examples on which each simulated step's NFT loss is evaluated."}
    )
    guard_tolerance: float = field(
        default=0.2,
        metadata={
            "help": "Collapse guard: stop and roll back to the last good weights if original-domain accuracy falls "
            "this far below its starting value (a transient dip at the start of protection is normal)."
        },
    )
    guard_every: int = field(
        default=25, metadata={"help": "Steps between checks of the original-domain accuracy (0 disables the guard)."}
    )
    guard_examples: int = field(
        default=512, metadata={"help": "Original-domain evaluation examples used by the collapse guard."}
    )

    # ---- MAP (nft_method="map"): a learned binary mask over the frozen model's weights ----
    map_setting: str = field(
        default="source-available",
        metadata={"help": f"MAP setting, one of {MAP_SETTINGS}: source-available trains the source term with "
                  "cross-entropy on labelled original-domain data; the others distil the unmasked model's "
                  "outputs on train_dataset (synthesised pseudo-source inputs)."},
    )
    map_target_weight: float = field(
        default=1.0, metadata={"help": "MAP: weight of the restricted-domain term (nft_loss on restricted batches)."}
    )
    map_distill_temperature: float = field(
        default=1.0, metadata={"help": "MAP: softmax temperature of the distillation to the unmasked model."}
    )
    mask_max_sparsity: float = field(
        default=0.5, metadata={"help": "MAP: the largest fraction of each masked weight tensor that may be pruned."}
    )
    mask_score_init: float = field(
        default=0.01,
        metadata={"help": "MAP: initial mask score (> 0, so the mask starts all ones; smaller flips sooner)."},
    )
    mask_include_head: bool = field(
        default=False, metadata={"help": "MAP: also mask the classification head's weight."}
    )
    mask_target_modules: list[str] = field(
        default_factory=list,
        metadata={"help": "MAP: mask only linear/conv modules whose name contains one of these (empty: all)."},
    )

    # ---- SOPHON for diffusion models (nft_method="sophon_diffusion"): UNet2DModel + DDPMScheduler ----
    diffusion_nft_loss: str = field(
        default="dos",
        metadata={"help": "sophon_diffusion: non-fine-tunable loss on restricted images, 'dos' (||eps_hat||^2, the "
                  "fine-tuned model predicts no noise), 'mse_ascent' (-MSE(eps_hat, eps), gradient ascent), "
                  "'bounded_ascent' (-min(MSE, diffusion_nft_bound)) or 'log_ascent' (-log MSE)."},
    )
    diffusion_nft_bound: float = field(
        default=1.0, metadata={"help": "sophon_diffusion, bounded_ascent: the MSE above which the ascent stops."}
    )
    diffusion_suppression_max_timestep: int = field(
        default=0, metadata={"help": "sophon_diffusion: the non-fine-tunable loss noises restricted images only at "
                             "timesteps below this (where the domains still differ); 0: the whole schedule."}
    )
    diffusion_final_ntr_steps: int = field(
        default=0, metadata={"help": "sophon_diffusion: the last this many of max_steps are NTR steps only (a repair "
                             "of the original domain after the alternation)."}
    )
    diffusion_final_ntr_learning_rate: float = field(
        default=0.0, metadata={"help": "sophon_diffusion: over the final NTR-only steps the learning rate goes "
                               "linearly from learning_rate to this (0: learning_rate as scheduled throughout)."}
    )
    diffusion_stop_adversary_loss: float = field(
        default=0.0, metadata={"help": "sophon_diffusion: the alternation ends early, and every later step is NTR "
                               "repair, once the simulated adversary's denoising loss after its last step, averaged "
                               "over the last diffusion_stop_window FTS steps, reaches this (0: never)."}
    )
    diffusion_stop_window: int = field(
        default=10, metadata={"help": "sophon_diffusion: how many FTS steps diffusion_stop_adversary_loss averages."}
    )
    diffusion_repair_fts_every: int = field(
        default=0, metadata={"help": "sophon_diffusion: during the repair, every this many steps one is an FTS step "
                             "that keeps the protection from eroding (0: the repair is NTR only)."}
    )
    diffusion_repair_original_tolerance: float = field(
        default=0.0, metadata={"help": "sophon_diffusion: a due maintenance FTS step waits until the original-domain "
                               "denoising MSE of the NTR steps since the last FTS step is within this fraction of "
                               "the MSE of the model as given to the trainer on the same noisy image, averaged over "
                               "images (0: no wait)."}
    )
    diffusion_repair_quiet_steps: int = field(
        default=0, metadata={"help": "sophon_diffusion: no maintenance FTS step in the last this many steps (at least "
                             "diffusion_repair_fts_every), so the NTR steps after the last one can repair what it "
                             "did to the original domain."}
    )
    diffusion_ntr_distillation: float = field(
        default=0.0, metadata={"help": "sophon_diffusion: NTR adds this weight times the MSE between the model's noise "
                               "prediction on original images and the prediction of the model as given to the trainer."}
    )
    diffusion_train_timesteps: int = field(
        default=100, metadata={"help": "sophon_diffusion: the DDPMScheduler's num_train_timesteps."}
    )
    diffusion_beta_schedule: str = field(
        default="squaredcos_cap_v2", metadata={"help": "sophon_diffusion: the DDPMScheduler's beta_schedule."}
    )

    # ---- EncoderLock (nft_method="encoderlock"): lock the encoder against probing on the prohibited domain ----
    encoderlock_setting: str = field(
        default="supervised",
        metadata={"help": f"EncoderLock setting, one of {ENCODERLOCK_SETTINGS}: supervised uses labelled "
                  "restricted_dataset; unsupervised ignores its labels (pseudo-labels from clustering the "
                  "unprotected encoder's features); zero-shot has no restricted data (stand-ins are synthesised "
                  "from train_dataset with encoderlock_zero_shot_transform)."},
    )
    encoderlock_round_steps: int = field(
        default=20, metadata={"help": "EncoderLock: optimizer steps per round (a round starts with a new "
                              "challenger and a new weight selection)."}
    )
    encoderlock_weights_per_round: int = field(
        default=100, metadata={"help": "EncoderLock: weights added to the update mask each round (N)."}
    )
    encoderlock_layers_per_round: int = field(
        default=1, metadata={"help": "EncoderLock: layers (weight tensors) the round's weights are taken from (M)."}
    )
    encoderlock_ratio_weight: float = field(
        default=1e3, metadata={"help": "EncoderLock: a in L_auth + log(1 + a * L_auth / L_prohibited)."}
    )
    encoderlock_probe_steps: int = field(
        default=200, metadata={"help": "EncoderLock: Adam steps of each challenger probe (linear and MLP)."}
    )
    encoderlock_probe_hidden_size: int = field(
        default=128, metadata={"help": "EncoderLock: hidden width of the MLP challenger probe."}
    )
    encoderlock_score_examples: int = field(
        default=256, metadata={"help": "EncoderLock: examples per domain for the gradient scores of a round."}
    )
    encoderlock_clusters: int = field(
        default=0, metadata={"help": "EncoderLock unsupervised: pseudo-label clusters (0: the model's num_labels)."}
    )
    encoderlock_zero_shot_transform: str = field(
        default="blocky",
        metadata={"help": "EncoderLock zero-shot: how stand-in prohibited data is made from train_dataset, a "
                  "name in hf_nft.methods.encoderlock.ZERO_SHOT_TRANSFORMS."},
    )

    # ---- MLAC (nft_method="mlac"): task blocking in text encoders, see hf_nft/methods/mlac.py ----
    # MLAC also uses inner_steps, adversary_batch_sizes and query_batch_size of the simulation above.
    mlac_harmful_weight: float = field(
        default=1.0, metadata={"help": "MLAC: weight of the adversary's harmful loss (steps 0..K, averaged)."}
    )
    mlac_linear_weight: float = field(
        default=1.0,
        metadata={"help": "MLAC: weight of the linear-readout term, log(1 + Fisher separability) of the harmful "
                  "labels in the mean token of each readout layer."},
    )
    mlac_readout_batches: int = field(
        default=1,
        metadata={"help": "MLAC: restricted batches pooled for the readout term (more rows: a separability closer "
                  "to what a probe trained on many examples finds, less fitted to one batch's noise)."},
    )
    mlac_readout_layers: list[int] | None = field(
        default=None,
        metadata={"help": "MLAC: hidden states the readout term measures (0 = embeddings' output; default every "
                  "transformer layer)."},
    )
    mlac_distill_weight: float = field(
        default=0.0,
        metadata={"help": "MLAC: weight of a KL term keeping the desired task's predictions those of the model as "
                  "blocking started."},
    )
    mlac_adversary_optimizer: str = field(
        default="adam", metadata={"help": "MLAC: the simulated adversary's optimizer (first-order mode)."}
    )
    mlac_adversary_lr: float = field(
        default=1e-3, metadata={"help": "MLAC: initial learning rate of the adversary (then meta-learned)."}
    )
    mlac_meta_lr: float = field(
        default=1e-2, metadata={"help": "MLAC: Adam rate of the adversary's meta-learned log-lr and head init."}
    )
    mlac_adapt_encoder: bool = field(
        default=True, metadata={"help": "MLAC: the simulated adversary trains the encoder too (else only its head)."}
    )
    mlac_second_order: bool = field(
        default=False,
        metadata={"help": "MLAC: differentiate through plain-SGD inner steps (torch.func); default first-order "
                  "(FOMAML, an approximation)."},
    )
    mlac_harmful_labels: int | None = field(
        default=None, metadata={"help": "MLAC: harmful-task class count (default: from restricted_dataset)."}
    )
    mlac_erasure_rounds: int = field(
        default=8,
        metadata={"help": "MLAC: rounds of nullspace projection that erase the harmful task's directions from the "
                  "word embeddings before blocking (kept erased while training; 0 turns it off)."},
    )
    mlac_prune_fraction: float = field(
        default=0.0,
        metadata={"help": "MLAC: fraction of the feed-forward units of each layer in mlac_prune_layers to zero "
                  "before blocking, those whose activation tracks the harmful labels most (0 turns it off)."},
    )
    mlac_prune_layers: list[int] | None = field(
        default=None,
        metadata={"help": "MLAC: transformer layers (0-based) whose feed-forward units are pruned (default all)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nft_loss not in NFT_LOSSES:
            raise ValueError(f"Unknown nft_loss {self.nft_loss!r}; expected one of {NFT_LOSSES}.")
        for name in ("alpha", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}.")
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha and beta are both 0: nothing would be trained.")
        for name in ("inner_steps", "fts_steps", "query_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.ntr_steps < 0 or self.guard_every < 0 or self.guard_examples <= 0:
            raise ValueError("ntr_steps and guard_every must be >= 0 and guard_examples > 0.")
        if not self.adversary_pool:
            raise ValueError("adversary_pool is empty: give at least one 'optimizer:learning_rate' entry.")
        for entry in self.adversary_pool:
            parse_adversary(entry)
        if not self.adversary_batch_sizes or min(self.adversary_batch_sizes) <= 0:
            raise ValueError(f"adversary_batch_sizes must be positive integers, got {self.adversary_batch_sizes}.")
        if not 0.0 <= self.head_reset_probability <= 1.0:
            raise ValueError(f"head_reset_probability must be in [0, 1], got {self.head_reset_probability}.")
        if not 0.0 <= self.guard_tolerance <= 1.0:
            raise ValueError(f"guard_tolerance must be in [0, 1], got {self.guard_tolerance}.")
        self._validate_map()
        self._validate_diffusion()
        self._validate_encoderlock()
        self._validate_mlac()

    def _validate_map(self) -> None:
        """Validate the MAP block."""
        if self.map_setting not in MAP_SETTINGS:
            raise ValueError(f"Unknown map_setting {self.map_setting!r}; expected one of {MAP_SETTINGS}.")
        if self.map_target_weight < 0:
            raise ValueError(f"map_target_weight must be non-negative, got {self.map_target_weight}.")
        if self.map_distill_temperature <= 0:
            raise ValueError(f"map_distill_temperature must be positive, got {self.map_distill_temperature}.")
        if not 0.0 < self.mask_max_sparsity <= 1.0:
            raise ValueError(f"mask_max_sparsity must be in (0, 1], got {self.mask_max_sparsity}.")
        if self.mask_score_init <= 0:
            raise ValueError(f"mask_score_init must be positive (the mask starts all ones), got {self.mask_score_init}.")

    def _validate_diffusion(self) -> None:
        """Validate the sophon_diffusion block (names from hf_nft.diffusion.denoising, imported only here)."""
        from hf_nft.diffusion.denoising import BETA_SCHEDULES, DIFFUSION_NFT_LOSSES

        if self.diffusion_nft_loss not in DIFFUSION_NFT_LOSSES:
            raise ValueError(f"Unknown diffusion_nft_loss {self.diffusion_nft_loss!r}; expected one of "
                             f"{tuple(DIFFUSION_NFT_LOSSES)}.")
        if self.diffusion_train_timesteps < 2:
            raise ValueError(f"diffusion_train_timesteps must be at least 2, got {self.diffusion_train_timesteps}.")
        if self.diffusion_beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"Unknown diffusion_beta_schedule {self.diffusion_beta_schedule!r}; expected one of "
                             f"{BETA_SCHEDULES}.")
        if self.diffusion_final_ntr_learning_rate < 0:
            raise ValueError(f"diffusion_final_ntr_learning_rate must be non-negative (0: learning_rate), got "
                             f"{self.diffusion_final_ntr_learning_rate}.")
        if self.diffusion_nft_bound <= 0 or self.diffusion_ntr_distillation < 0:
            raise ValueError("diffusion_nft_bound must be positive and diffusion_ntr_distillation non-negative, got "
                             f"{self.diffusion_nft_bound} and {self.diffusion_ntr_distillation}.")
        if self.diffusion_stop_adversary_loss < 0 or self.diffusion_stop_window < 1:
            raise ValueError("diffusion_stop_adversary_loss must be non-negative and diffusion_stop_window at least 1, "
                             f"got {self.diffusion_stop_adversary_loss} and {self.diffusion_stop_window}.")
        if self.diffusion_repair_fts_every < 0:
            raise ValueError(f"diffusion_repair_fts_every must be non-negative (0: off), got "
                             f"{self.diffusion_repair_fts_every}.")
        for name in ("diffusion_repair_original_tolerance", "diffusion_repair_quiet_steps"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be non-negative (0: off), got {value}.")
            if value > 0 and self.diffusion_repair_fts_every == 0:
                raise ValueError(f"{name} shapes the maintenance FTS steps; set diffusion_repair_fts_every > 0 as "
                                 "well.")
        final = self.diffusion_final_ntr_steps
        if final < 0 or (self.max_steps > 0 and final >= self.max_steps):
            raise ValueError(f"diffusion_final_ntr_steps must be in [0, max_steps), got {final} with max_steps "
                             f"{self.max_steps}.")
        if not 0 <= self.diffusion_suppression_max_timestep <= self.diffusion_train_timesteps:
            raise ValueError(f"diffusion_suppression_max_timestep must be in [0, {self.diffusion_train_timesteps}] "
                             f"(0: every timestep), got {self.diffusion_suppression_max_timestep}.")

    def _validate_encoderlock(self) -> None:
        """Validate the EncoderLock block."""
        if self.encoderlock_setting not in ENCODERLOCK_SETTINGS:
            raise ValueError(
                f"Unknown encoderlock_setting {self.encoderlock_setting!r}; expected one of {ENCODERLOCK_SETTINGS}."
            )
        for name in ("encoderlock_round_steps", "encoderlock_weights_per_round", "encoderlock_layers_per_round",
                     "encoderlock_probe_steps", "encoderlock_probe_hidden_size", "encoderlock_score_examples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.encoderlock_ratio_weight <= 0 or self.encoderlock_clusters < 0:
            raise ValueError("encoderlock_ratio_weight must be positive and encoderlock_clusters >= 0.")

    def _validate_mlac(self) -> None:
        """Validate the MLAC block."""
        check_optimizer_name(self.mlac_adversary_optimizer)
        for name in ("mlac_harmful_weight", "mlac_linear_weight", "mlac_distill_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}.")
        if self.mlac_readout_batches < 1:
            raise ValueError(f"mlac_readout_batches must be at least 1, got {self.mlac_readout_batches}.")
        for name in ("mlac_adversary_lr", "mlac_meta_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.mlac_harmful_labels is not None and self.mlac_harmful_labels < 2:
            raise ValueError(f"mlac_harmful_labels must be at least 2, got {self.mlac_harmful_labels}.")
        if self.mlac_erasure_rounds < 0:
            raise ValueError(f"mlac_erasure_rounds must be non-negative, got {self.mlac_erasure_rounds}.")
        if not 0 <= self.mlac_prune_fraction < 1:
            raise ValueError(f"mlac_prune_fraction must be in [0, 1), got {self.mlac_prune_fraction}.")

    @property
    def restricted_batch_size(self) -> int:
        """Restricted examples drawn per simulated step: the largest adversary batch plus the query batch."""
        return max(self.adversary_batch_sizes) + self.query_batch_size

    @classmethod
    def from_training_arguments(cls, args: TrainingArguments, **overrides: object) -> NFTConfig:
        """Upgrade a plain ``TrainingArguments`` (every field kept) to an ``NFTConfig`` with default NFT fields."""
        if isinstance(args, cls) and not overrides:
            return args
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and hasattr(args, f.name)}
        values.update(overrides)
        return cls(**values)
