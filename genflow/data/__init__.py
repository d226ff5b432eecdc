"""genflow.data."""
