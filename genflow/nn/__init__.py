"""genflow.nn."""
