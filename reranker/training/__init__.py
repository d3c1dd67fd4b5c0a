"""Training: losses, the training loop with exact resume, and batched scoring."""
