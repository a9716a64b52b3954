"""The DDPM noise-prediction objective and the non-fine-tunable losses of SOPHON's diffusion mode.

A model here is a ``diffusers`` ``UNet2DModel`` predicting the noise ``eps`` added to an image at timestep ``t``.
The adversary minimises the ordinary denoising loss ``MSE(eps_hat, eps)``; SOPHON wants the fine-tuned model to
fail at it, either by predicting no noise at all (``dos``: ``||eps_hat||^2``, denial of service) or by gradient
ascent on the adversary's own loss (``mse_ascent``: ``-MSE(eps_hat, eps)``, unbounded; ``bounded_ascent``:
``-min(MSE, bound)``, which stops pushing once the error reaches ``bound``; ``log_ascent``: ``-log MSE``, whose push
weakens as the error grows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # diffusers is imported where a scheduler is built, so that NFTConfig stays light
    from diffusers import DDPMScheduler

Batch = dict[str, Any]
# Calls the model on ``{"sample": noisy, "timestep": t}`` and returns its output (``.sample`` is eps_hat).
Forward = Callable[[Batch], Any]
IMAGE_KEY = "pixel_values"
DEFAULT_TRAIN_TIMESTEPS = 100
# The cosine schedule noises images fully whatever the number of timesteps (the linear one needs ~1000).
DEFAULT_BETA_SCHEDULE = "squaredcos_cap_v2"
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def make_scheduler(num_train_timesteps: int = DEFAULT_TRAIN_TIMESTEPS,
                   beta_schedule: str = DEFAULT_BETA_SCHEDULE) -> DDPMScheduler:
    """The DDPM noise schedule shared by pre-training, protection, attacks and sampling."""
    from diffusers import DDPMScheduler

    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be at least 2, got {num_train_timesteps}.")
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"Unknown beta_schedule {beta_schedule!r}; expected one of {BETA_SCHEDULES}.")
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)


def add_noise(images: torch.Tensor, scheduler: DDPMScheduler, generator: torch.Generator | None = None,
              timesteps: torch.Tensor | None = None,
              max_timestep: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(noisy, timesteps, noise)``: ``images`` noised at given timesteps, or at random ones drawn uniformly below
    ``max_timestep`` (default: the whole schedule), with Gaussian noise."""
    if timesteps is None:
        high = max_timestep or scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, high, (images.shape[0],), generator=generator)
    timesteps = timesteps.to(images.device)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return scheduler.add_noise(images, noise, timesteps), timesteps, noise


def predict_noise(forward: Forward, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The model's noise prediction ``eps_hat`` (``forward`` gets the UNet's own keyword arguments)."""
    return forward({"sample": noisy, "timestep": timesteps}).sample


def denoising_mse(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The DDPM training loss ``MSE(eps_hat, eps)`` (what the adversary minimises)."""
    return F.mse_loss(prediction.float(), noise.float())


def dos_loss(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Denial of service ``||eps_hat||^2`` (mean over elements): the model predicts no noise. ``noise`` is
    accepted for a uniform signature and ignored."""
    return prediction.float().pow(2).mean()


def mse_ascent_loss(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the adversary's loss: ``-MSE(eps_hat, eps)`` (unbounded below)."""
    return -denoising_mse(prediction, noise)


def bounded_ascent_loss(prediction: torch.Tensor, noise: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """Gradient ascent on the adversary's loss up to ``bound``: ``-min(MSE(eps_hat, eps), bound)`` (no gradient once
    the error reaches ``bound``, so the released weights are not driven to arbitrarily large predictions)."""
    return -denoising_mse(prediction, noise).clamp(max=bound)


def log_ascent_loss(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the log of the adversary's loss: ``-log MSE(eps_hat, eps)`` (its gradient is the ascent's
    divided by the error, strong where the model denoises well and weak where it already fails)."""
    return -denoising_mse(prediction, noise).clamp(min=1e-12).log()


DIFFUSION_NFT_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "dos": dos_loss,
    "mse_ascent": mse_ascent_loss,
    "bounded_ascent": bounded_ascent_loss,
    "log_ascent": log_ascent_loss,
}


def nft_loss_function(name: str, bound: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The non-fine-tunable loss ``name`` of :data:`DIFFUSION_NFT_LOSSES` (``bound`` applies to ``bounded_ascent``)."""
    if name not in DIFFUSION_NFT_LOSSES:
        raise ValueError(f"Unknown diffusion_nft_loss {name!r}; expected one of {tuple(DIFFUSION_NFT_LOSSES)}.")
    return partial(bounded_ascent_loss, bound=bound) if name == "bounded_ascent" else DIFFUSION_NFT_LOSSES[name]


def batch_loss(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], forward: Forward, batch: Batch,
               scheduler: DDPMScheduler, generator: torch.Generator | None = None,
               max_timestep: int | None = None) -> torch.Tensor:
    """``loss(eps_hat, eps)`` on the images of ``batch`` noised at random timesteps (below ``max_timestep``)."""
    if IMAGE_KEY not in batch:
        raise ValueError(f"A diffusion batch needs a {IMAGE_KEY!r} key; got keys {sorted(batch)}.")
    noisy, timesteps, noise = add_noise(batch[IMAGE_KEY], scheduler, generator, max_timestep=max_timestep)
    return loss(predict_noise(forward, noisy, timesteps), noise)


@torch.no_grad()
def fixed_noise_batches(batches: Sequence[Batch], scheduler: DDPMScheduler, timesteps: Sequence[int],
                        seed: int = 0) -> list[Batch]:
    """Evaluation batches: every image of ``batches`` noised at each of ``timesteps`` with noise drawn from
    ``seed``, as ``{"sample", "timestep", "noise"}`` (the same for every model, so scores compare)."""
    total = scheduler.config.num_train_timesteps
    if not timesteps or not all(0 <= int(t) < total for t in timesteps):
        raise ValueError(f"Evaluation timesteps must be in [0, {total}), got {list(timesteps)}.")
    generator = torch.Generator().manual_seed(seed)
    fixed = []
    for batch in batches:
        images = batch[IMAGE_KEY]
        for step in timesteps:
            steps = torch.full((images.shape[0],), int(step), dtype=torch.long)
            noisy, steps, noise = add_noise(images, scheduler, generator, steps)
            fixed.append({"sample": noisy, "timestep": steps, "noise": noise})
    return fixed
