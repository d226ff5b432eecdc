"""genflow.train."""
