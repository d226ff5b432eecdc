"""A pickle-free reader for the CIFAR-10 python batches.

The official ``cifar-10-batches-py/*_batch*`` files are Python pickles (protocol 2, written by Python 2's cPickle).
Python's ``pickle.load`` runs whatever callables a file names, so loading a downloaded pickle is running downloaded
code. Instead of ``pickle``, this module interprets the pickle opcodes itself, restricted to exactly what these
files contain: a dict of byte-string keys whose values are byte strings, lists of small ints or byte strings, and one
C-contiguous numpy ``uint8`` array. The only "callables" it accepts are the four names such a file refers to, and
none of them is imported or called: ``numpy.core.multiarray._reconstruct`` with ``numpy.ndarray`` and ``numpy.dtype``
become placeholders that the BUILD opcode turns into an array built with ``np.frombuffer``, and ``_codecs.encode``
(how Python 3 writes byte strings at protocol 2) becomes ``str.encode("latin-1")``. Any other opcode or name is an
error, so a file cannot make this reader do anything but build those values. The other pickle-free option, the
``cifar-10-binary.tar.gz`` release, is a different download with its own checksum; the python release is the one the
issue names and the one most users already have (torchvision and Keras fetch it).

References:
    The pickle protocol: ``Lib/pickletools.py`` in CPython documents every opcode used here.
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (the CIFAR-10 file layout).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

# The module paths of numpy's array reconstructor: numpy < 2 (and Python 2's numpy) wrote numpy.core, numpy 2 writes
# numpy._core.
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_NDARRAY = ("numpy", "ndarray")
_DTYPE = ("numpy", "dtype")
_ENCODE = ("_codecs", "encode")
_MARK = object()


class PickleFormatError(ValueError):
    """The bytes are not a pickle of the restricted CIFAR-10 kind."""


class _Global:
    """A name from a GLOBAL opcode; never imported."""

    def __init__(self, module: str, name: str):
        self.key = (module, name)


class _PendingArray:
    """``_reconstruct(ndarray, (0,), b"b")``: an empty array that BUILD fills."""


class _PendingDtype:
    """``dtype("u1", 0, 1)``: a dtype that BUILD confirms."""


def _reduce(func: Any, args: Any) -> Any:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise PickleFormatError(f"REDUCE of {func!r}: only numpy arrays and byte strings are allowed")
    if func.key == _ENCODE and len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
        return args[0].encode("latin-1")
    if func.key in _RECONSTRUCT and len(args) == 3 and isinstance(args[0], _Global) and args[0].key == _NDARRAY:
        return _PendingArray()
    if func.key == _DTYPE and len(args) == 3 and args[0] in (b"u1", "u1"):
        return _PendingDtype()
    raise PickleFormatError(f"REDUCE of {'.'.join(func.key)}{args!r} is not allowed: only uint8 arrays")


def _build(obj: Any, state: Any) -> Any:
    if isinstance(obj, _PendingDtype):
        # dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags); '|' = not applicable.
        if not (isinstance(state, tuple) and len(state) == 8 and state[1] in (b"|", "|")):
            raise PickleFormatError(f"unexpected uint8 dtype state {state!r}")
        return np.dtype(np.uint8)
    if isinstance(obj, _PendingArray):
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes).
        if not (isinstance(state, tuple) and len(state) == 5 and state[2] == np.dtype(np.uint8)):
            raise PickleFormatError("array state: expected (version, shape, uint8 dtype, is_fortran, bytes)")
        _, shape, _, fortran, raw = state
        if not isinstance(raw, bytes) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise PickleFormatError("array state: bad shape or data")
        if len(raw) != int(np.prod(shape)):
            raise PickleFormatError(f"array data holds {len(raw)} bytes, shape {shape} needs {int(np.prod(shape))}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape, order="F" if fortran else "C")
    raise PickleFormatError(f"BUILD of {type(obj).__name__} is not allowed")


class _Reader:
    """A pickle virtual machine for protocol 2, with the opcodes that the CIFAR-10 batches use and nothing else."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PickleFormatError(f"truncated pickle: needs {n} bytes at offset {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise PickleFormatError("truncated pickle: unterminated GLOBAL name")
        text = self.data[self.pos : end].decode("ascii")
        self.pos = end + 1
        return text

    def unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def pop_mark(self) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1 :]
                del self.stack[i:]
                return items
        raise PickleFormatError("malformed pickle: no MARK on the stack")

    def put(self, index: int) -> None:
        self.memo[index] = self.stack[-1]

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise PickleFormatError(f"malformed pickle: memo entry {index} is missing")
        self.stack.append(self.memo[index])

    def build(self) -> None:
        state, obj = self.stack.pop(), self.stack.pop()
        built = _build(obj, state)
        # BUILD mutates its object in place in real pickle: every memo reference to it must see the result.
        for k, v in self.memo.items():
            if v is obj:
                self.memo[k] = built
        self.stack.append(built)

    def setitems(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if not isinstance(target, dict) or len(items) % 2:
            raise PickleFormatError("malformed pickle: SETITEMS needs a dict and key/value pairs")
        for k, v in zip(items[::2], items[1::2], strict=True):
            if not isinstance(k, (bytes, str)):
                raise PickleFormatError(f"dict key {k!r} is not a string")
            target[k] = v

    def append(self, items: list[Any]) -> None:
        if not isinstance(self.stack[-1], list):
            raise PickleFormatError("malformed pickle: APPENDS needs a list")
        self.stack[-1].extend(items)

    def step(self, op: int) -> bool:
        """Run one opcode; False at STOP."""
        s = self.stack
        match bytes([op]):
            case b".":  # STOP
                return False
            case b"\x80":  # PROTO
                if (proto := self.take(1)[0]) != 2:
                    raise PickleFormatError(f"pickle protocol {proto}: the CIFAR-10 batches use protocol 2")
            case b"}":
                s.append({})
            case b"]":
                s.append([])
            case b")":
                s.append(())
            case b"(":
                s.append(_MARK)
            case b"q":
                self.put(self.take(1)[0])
            case b"r":
                self.put(self.unpack("<I"))
            case b"h":
                self.get(self.take(1)[0])
            case b"j":
                self.get(self.unpack("<I"))
            case b"U":  # SHORT_BINSTRING: Python 2 str (bytes)
                s.append(self.take(self.take(1)[0]))
            case b"T":  # BINSTRING
                s.append(self.take(self.unpack("<i")))
            case b"X":  # BINUNICODE: Python 3 str
                s.append(self.take(self.unpack("<I")).decode("utf-8"))
            case b"c":
                module, name = self.line(), self.line()
                if (module, name) not in {*_RECONSTRUCT, _NDARRAY, _DTYPE, _ENCODE}:
                    raise PickleFormatError(f"GLOBAL {module}.{name} is not allowed")
                s.append(_Global(module, name))
            case b"K":
                s.append(self.take(1)[0])
            case b"M":
                s.append(self.unpack("<H"))
            case b"J":
                s.append(self.unpack("<i"))
            case b"N":
                s.append(None)
            case b"\x88":
                s.append(True)
            case b"\x89":
                s.append(False)
            case b"t":
                s.append(tuple(self.pop_mark()))
            case b"\x85" | b"\x86" | b"\x87":  # TUPLE1, TUPLE2, TUPLE3
                n = op - 0x84
                if len(s) < n:
                    raise PickleFormatError("malformed pickle: stack underflow")
                items = tuple(s[-n:])
                del s[-n:]
                s.append(items)
            case b"R":
                args = s.pop()
                s.append(_reduce(s.pop(), args))
            case b"b":
                self.build()
            case b"a":
                self.append([s.pop()])
            case b"e":
                self.append(self.pop_mark())
            case b"s":
                value, key = s.pop(), s.pop()
                self.setitems([key, value])
            case b"u":
                self.setitems(self.pop_mark())
            case _:
                raise PickleFormatError(f"pickle opcode {bytes([op])!r} at offset {self.pos - 1} is not allowed")
        return True

    def run(self) -> Any:
        try:
            while self.step(self.take(1)[0]):
                pass
        except IndexError as e:  # pop from an empty stack
            raise PickleFormatError(f"malformed pickle: stack underflow at offset {self.pos}") from e
        if len(self.stack) != 1:
            raise PickleFormatError(f"malformed pickle: {len(self.stack)} values left on the stack at STOP")
        return self.stack[0]


def _check_values(value: Any) -> None:
    if isinstance(value, (_Global, _PendingArray, _PendingDtype)):
        raise PickleFormatError(f"unbuilt {type(value).__name__} in the result")
    if isinstance(value, list):
        for item in value:
            _check_values(item)


def read_pickled_dict(data: bytes) -> dict[bytes, Any]:
    """Decode a CIFAR-10 python batch (a protocol-2 pickle of a dict) without ``pickle``.

    Returns:
        The dict, with ``str`` keys encoded to bytes (Python 2 wrote byte strings; a Python 3 writer may use str).
        Its values are bytes, str, ints, lists of those, or read-only ``uint8`` numpy arrays.

    Raises:
        PickleFormatError: for any opcode, name or value outside that set, or truncated/malformed input.
    """
    result = _Reader(data).run()
    if not isinstance(result, dict):
        raise PickleFormatError(f"expected a pickled dict, got {type(result).__name__}")
    for value in result.values():
        _check_values(value)
    return {k.encode("latin-1") if isinstance(k, str) else k: v for k, v in result.items()}
