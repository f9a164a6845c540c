"""Sampling: DDPM/DDIM noise schedules, the batched denoising loop and its backends."""
