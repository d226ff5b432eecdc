"""genflow.interpolants."""
