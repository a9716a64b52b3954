"""Learned binary masks over frozen weights (``torch.nn.utils.parametrize``), and baking them into plain weights.

A masked weight is ``original * mask``: ``mask = scores > 0`` is hard in the forward pass and passes its gradient
straight through to the real-valued ``scores`` (the straight-through estimator), so an optimizer trains the
scores while the original weights stay frozen. A per-tensor cap bounds the fraction of weights that may be
pruned: when more scores are non-positive than the cap allows, only the lowest ones are pruned.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from hf_nft.attacks.files import atomic_path
from hf_nft.modeling import classifier_head

MASKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class HardMask(nn.Module):
    """Parametrization ``weight -> weight * mask(scores)`` with a straight-through gradient to ``scores``."""

    def __init__(self, weight: torch.Tensor, max_sparsity: float, score_init: float) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.full_like(weight, score_init, dtype=torch.float32))
        self.max_sparsity = max_sparsity

    @torch.no_grad()
    def mask(self) -> torch.Tensor:
        """The hard 0/1 mask: ``scores > 0``, pruning at most ``max_sparsity`` of the entries (the lowest scores)."""
        keep = self.scores > 0
        size = self.scores.numel()
        prunable = int(self.max_sparsity * size)
        if size - int(keep.sum()) > prunable:
            keep = torch.zeros(size, dtype=torch.bool, device=self.scores.device)
            keep[self.scores.flatten().topk(size - prunable).indices] = True
            keep = keep.view_as(self.scores)
        return keep.to(self.scores.dtype)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        straight_through = self.mask() + (self.scores - self.scores.detach())  # value: exactly the mask
        return weight * straight_through.to(weight.dtype)


def maskable_modules(model: nn.Module, include_head: bool = False, targets: list[str] | None = None) -> list[str]:
    """Names of the linear/convolution modules to mask: all of them, or those whose name contains one of
    ``targets``; the classification head only with ``include_head``."""
    head_name, _ = classifier_head(model)
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, MASKABLE) or (name == head_name and not include_head):
            continue
        if targets and not any(target in name for target in targets):
            continue
        names.append(name)
    return names


def attach_masks(model: nn.Module, names: list[str], max_sparsity: float, score_init: float) -> None:
    """Freeze every parameter of ``model`` and mask the weight of each named module with trainable scores."""
    model.requires_grad_(False)
    modules = dict(model.named_modules())
    for name in names:
        module = modules[name]
        parametrize.register_parametrization(module, "weight", HardMask(module.weight, max_sparsity, score_init))
        module.parametrizations.weight.original.requires_grad_(False)


def freeze_norm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: masks are learned under the frozen running statistics that the
    released model will use, and training updates no buffer."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def masked_modules(model: nn.Module) -> dict[str, HardMask]:
    """The :class:`HardMask` of every masked module, keyed by the weight's name (``"<module>.weight"``)."""
    found = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for parametrization in module.parametrizations.weight:
                if isinstance(parametrization, HardMask):
                    found[f"{name}.weight"] = parametrization
    return found


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The hard mask of every masked weight."""
    return {name: mask.mask() for name, mask in masked_modules(model).items()}


def sparsity(masks: dict[str, torch.Tensor]) -> float:
    """Fraction of masked entries that are pruned (0 when there are none)."""
    total = sum(mask.numel() for mask in masks.values())
    return sum(int((mask == 0).sum()) for mask in masks.values()) / total if total else 0.0


def bake_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Replace every masked weight by ``original * mask`` as a plain parameter, make every parameter trainable
    again (an ordinary model), and return the masks."""
    masks = current_masks(model)
    modules = dict(model.named_modules())
    for name in masks:
        parametrize.remove_parametrizations(modules[name.removesuffix(".weight")], "weight", leave_parametrized=True)
    model.requires_grad_(True)
    return masks


def save_masks(masks: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write the masks as ``uint8`` tensors to a safetensors file, atomically."""
    tensors = {name: mask.to("cpu", torch.uint8).contiguous() for name, mask in masks.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata={"format": "pt", "hf_nft": "map mask"})


@torch.no_grad()
def apply_masks(model: nn.Module, path: str | Path) -> None:
    """Zero the weights of ``model`` where a saved mask (:func:`save_masks`) is 0, in place."""
    parameters = dict(model.named_parameters())
    for name, mask in load_file(str(path)).items():
        if name not in parameters or parameters[name].shape != mask.shape:
            raise ValueError(f"Mask entry {name!r} does not match a weight of {type(model).__name__}.")
        parameters[name].mul_(mask.to(parameters[name].device, parameters[name].dtype))
