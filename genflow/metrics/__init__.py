"""genflow.metrics."""
