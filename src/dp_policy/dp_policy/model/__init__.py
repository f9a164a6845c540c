"""The networks: observation encoders, the conditional 1D U-Net with FiLM, the policy heads."""
