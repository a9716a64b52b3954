"""The attack harness: attack kinds (one per module, registered lazily by name), runner and suites."""

from hf_nft.registry import ATTACKS

KINDS = {
    "full_finetune": "hf_nft.attacks.full_finetune:FullFinetune",
    "partial_finetune": "hf_nft.attacks.partial_finetune:PartialFinetune",
    "linear_probe": "hf_nft.attacks.probes:LinearProbe",
    "mlp_probe": "hf_nft.attacks.probes:MLPProbe",
    "prompt_probe": "hf_nft.attacks.prompt_probe:PromptProbe",
    "lora": "hf_nft.attacks.lora:LoRA",
    "peft": "hf_nft.attacks.lora:PeftMethod",
    "tuned": "hf_nft.attacks.tuned:TunedAttack",
    "diffusion_finetune": "hf_nft.diffusion.attacks:DiffusionFinetune",
    "diffusion_lora": "hf_nft.diffusion.attacks:DiffusionLoRA",
}
for _name, _target in KINDS.items():
    ATTACKS.register_lazy(_name, _target)
