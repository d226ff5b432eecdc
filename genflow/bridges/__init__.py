"""genflow.bridges."""
