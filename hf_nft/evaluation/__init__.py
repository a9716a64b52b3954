"""Measuring protection: pluggable metrics, the protection report, its curves and plots."""

from hf_nft.registry import METRICS

for _name, _target in {
    "accuracy": "hf_nft.evaluation.metrics:Accuracy",
    "cross_entropy": "hf_nft.evaluation.metrics:CrossEntropy",
    "denoising_mse": "hf_nft.diffusion.attacks:DenoisingMSE",
}.items():
    METRICS.register_lazy(_name, _target)
