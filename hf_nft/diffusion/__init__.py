"""Non-fine-tunable learning for diffusion models (``diffusers`` ``UNet2DModel`` + ``DDPMScheduler``): denoising
losses, attack kinds and metrics for the harness, sampling, a domain classifier and the evaluation."""
