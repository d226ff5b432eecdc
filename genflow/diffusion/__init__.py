"""genflow.diffusion."""
