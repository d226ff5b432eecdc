"""genflow.smd."""
