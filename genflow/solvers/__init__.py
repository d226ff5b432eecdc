"""genflow.solvers."""
