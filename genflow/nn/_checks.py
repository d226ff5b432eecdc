"""Constructor argument checks, so that a bad config fails before any compilation with a clear message."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(name: str, value: object, allowed: Iterable[str]) -> None:
    """Raise a ValueError naming the argument, the value and the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {allowed}.")


def check_positive(name: str, value: int) -> None:
    """Raise a ValueError unless ``value`` is a positive integer."""
    if int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer.")


def check_nonnegative(name: str, value: int) -> None:
    """Raise a ValueError unless ``value`` is a non-negative integer."""
    if int(value) != value or value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer.")


def check_even(name: str, value: int) -> None:
    """Raise a ValueError unless ``value`` is a positive even integer (sin/cos pairs need an even size)."""
    check_positive(name, value)
    if value % 2:
        raise ValueError(f"{name}={value!r} must be even: the embedding is made of sin/cos pairs.")
