"""Protection methods, registered by name in :data:`hf_nft.registry.METHODS`."""

from hf_nft.registry import METHODS

METHODS.register_lazy("sophon", "hf_nft.methods.sophon:Sophon")
METHODS.register_lazy("map", "hf_nft.methods.mask_pruning:MaskPruning")
METHODS.register_lazy("sophon_diffusion", "hf_nft.methods.sophon_diffusion:SophonDiffusion")
METHODS.register_lazy("encoderlock", "hf_nft.methods.encoderlock:EncoderLock")
METHODS.register_lazy("mlac", "hf_nft.methods.mlac:Mlac")
