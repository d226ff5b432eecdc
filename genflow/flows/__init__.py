"""genflow.flows."""
