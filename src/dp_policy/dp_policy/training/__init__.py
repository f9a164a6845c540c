"""Training: the trainer, held-out checkpoint selection, the training report, dp_train."""
