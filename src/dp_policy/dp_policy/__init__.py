"""Diffusion Policy (Chi et al. 2023) as a library: no rclpy, usable from a script or a notebook.

    from dp_policy.checkpoint import load_checkpoint
    from dp_policy.policy import DiffusionPolicy

    policy = DiffusionPolicy(load_checkpoint('models/reach_image.ckpt'))

Subpackages, one concern each:
  model     the networks: observation encoders, the conditional 1D U-Net (FiLM), the policy heads
  sampling  noise schedules (DDPM/DDIM), the batched denoising loop and its backends
  data      rosbag2 demonstrations -> episodes and training windows, normalisation
  training  the trainer, held-out selection, its report, the dp_train command
and at the top: config.py (the dataclasses a checkpoint stores), checkpoint.py (the one file
format), policy.py (DiffusionPolicy: observations in, action chunks out).
"""
