"""Constructor argument checks shared by every subpackage, so that a bad config fails before any compilation with a
clear message naming the argument, the value and what is allowed."""

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


def check_positive_int(name: str, value: object) -> None:
    """Raise a ValueError unless ``value`` is a Python int (not a bool) of at least 1: step counts, sizes."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: must be a positive integer")


def check_probability(name: str, value: object) -> None:
    """Raise a ValueError unless ``0 <= value < 1`` (a dropout rate: 1 would drop every example)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r} is invalid: must lie in [0, 1)")


def as_shape(shape: object) -> tuple[int, ...]:
    """A shape tuple from an int or a sequence (Hydra passes lists)."""
    return tuple(int(s) for s in shape) if hasattr(shape, "__len__") else (int(shape),)


def check_instance(name: str, value: object, cls: type | tuple[type, ...], allowed: str) -> None:
    """Raise a ValueError unless ``value`` is a ``cls`` strategy module; ``allowed`` names the choices."""
    if not isinstance(value, cls):
        raise ValueError(f"{name}={value!r} is invalid; allowed: {allowed}")


def check_callable(name: str, value: object, allowed: str) -> None:
    """Raise a ValueError unless ``value`` is callable (a strategy passed as a function or class, not its name)."""
    if not callable(value):
        raise ValueError(f"{name}={value!r} is not allowed: pass a callable, {allowed}.")
