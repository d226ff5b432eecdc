"""The library's design rules, checked over every module class in genflow (DESIGN.md, "The contract"):

- abstract or final, the equinox way: no concrete method or property is overridden by a subclass;
- no static ``str`` field chooses behaviour (strategy modules do); a string stays only where it names data.

References:
    equinox's "abstract/final" pattern: https://docs.kidger.site/equinox/pattern/
"""

import dataclasses
import importlib
import inspect
import pkgutil

import equinox as eqx
import pytest

import genflow

# Static strings that name data rather than choose behaviour: a toy dataset's name, a split of a real dataset.
DATA_NAMES = {
    "genflow.data._toy.Toy2D.name",
    "genflow.data._finite.Digits.split",
    "genflow.data._images.ImageDataset.name",
    "genflow.data._images.ImageDataset.split",
}


def _module_classes() -> list[type]:
    classes = {}
    for info in pkgutil.walk_packages(genflow.__path__, "genflow."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, eqx.Module) and cls.__module__.startswith("genflow"):
                classes[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [classes[name] for name in sorted(classes)]


CLASSES = _module_classes()


def _is_abstract(member) -> bool:
    member = member.fget if isinstance(member, property) else member
    return getattr(member, "__isabstractmethod__", False)


def _overridden_concrete(cls: type, package: str = "genflow") -> list[str]:
    found = []
    for name, value in vars(cls).items():
        if name.startswith("__") and name != "__call__":
            continue
        if not (callable(value) or isinstance(value, property)):
            continue
        for base in cls.__mro__[1:]:
            if not base.__module__.startswith(package):  # equinox and object methods are not ours to judge
                continue
            inherited = vars(base).get(name)
            if inherited is not None and (callable(inherited) or isinstance(inherited, property)):
                if not _is_abstract(inherited):
                    found.append(f"{cls.__qualname__}.{name} overrides {base.__qualname__}.{name}")
                break
    return found


def test_every_subpackage_was_scanned():
    packages = {cls.__module__.split(".")[1] for cls in CLASSES}
    assert {"diffusion", "smd", "interpolants", "flows", "bridges", "couplings", "nn", "solvers"} <= packages


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_no_concrete_method_is_overridden(cls):
    assert _overridden_concrete(cls) == []


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_no_static_string_chooses_behaviour(cls):
    if not dataclasses.is_dataclass(cls):
        return
    for field in dataclasses.fields(cls):
        name = f"{cls.__module__}.{cls.__qualname__}.{field.name}"
        if field.type in (str, "str") and field.metadata.get("static") and name not in DATA_NAMES:
            pytest.fail(f"{name} is a static str field: pass a strategy module instead")


def test_the_checks_can_fail():
    class AbstractBase(eqx.Module):
        def concrete(self):
            return 1

    class Final(AbstractBase):
        mode: str = eqx.field(static=True, default="a")

        def concrete(self):
            return 2

    assert _overridden_concrete(Final, package=__name__) == [
        "test_the_checks_can_fail.<locals>.Final.concrete overrides "
        "test_the_checks_can_fail.<locals>.AbstractBase.concrete"
    ]
    assert [f.name for f in dataclasses.fields(Final) if f.type in (str, "str") and f.metadata.get("static")] == [
        "mode"
    ]
