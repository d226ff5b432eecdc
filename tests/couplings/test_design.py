"""The couplings are abstract or final, the equinox way: no concrete method is overridden by a subclass, and every
final coupling implements the whole interface."""

import abc
import inspect

import pytest

import genflow.couplings as couplings

BASES = (couplings.AbstractCoupling, couplings.AbstractEpsilonSchedule)
CLASSES = [c for c in vars(couplings).values() if inspect.isclass(c) and issubclass(c, BASES)]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_no_concrete_method_is_overridden(cls):
    for name, value in vars(cls).items():
        if not callable(value) or name.startswith("__") and name != "__call__":
            continue
        for base in cls.__mro__[1:]:
            inherited = vars(base).get(name)
            if inherited is not None and callable(inherited):
                assert getattr(inherited, "__isabstractmethod__", False), f"{cls.__name__}.{name} overrides {base}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_abstract_classes_are_named_abstract(cls):
    assert bool(getattr(cls, "__abstractmethods__", ())) == cls.__name__.startswith("Abstract")
    assert isinstance(cls, abc.ABCMeta)
