"""Reading pickled NumPy arrays from untrusted files, bounded before anything is built.

A restricted unpickler (only known callables) stops code from running, but not
files that are cheap to write and costly to read: an array declaring 1e9
elements in a 100-byte file, bytes "encoded" into bytes twice their size, a
container nested a million deep (whose hashing, repr or release overflows the C
stack: a segfault). So a file is read in two steps:

1. `scan`: a pass over the pickle's opcodes (`pickletools.genops`, flat, nothing
   built) that follows only how deep each object would nest and refuses nesting
   beyond `MAX_DEPTH`, objects changed after being nested (cycles), a stack
   beyond `MAX_STACK`, and opcodes that build arbitrary objects.
2. The load itself, where every array is checked before NumPy allocates it: a
   plain numeric dtype, a shape whose byte size equals the bytes the file holds
   for it, and all arrays together no larger than the file (`ArrayBudget`).

Reads never ask for more bytes than the file still holds (`_Bounded`).
"""
from __future__ import annotations

import codecs
import math
import os
import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

MAX_DEPTH = 64  # a .pdparams nests 4 deep, a checkpoint with optimizer state about 9
MAX_STACK = 100_000  # the pickler writes items in batches of 1000
MAX_NDIM = 32  # NumPy's own limit
_REFUSED_OPS = {  # never written for arrays and plain containers; each builds arbitrary objects
    "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "DUP",
    "BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"}
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


class Refused(ValueError):
    """The file was refused before the object it describes was built; says why.

    Not an UnpicklingError, which torch.load replaces with its own message."""


class Unexpected(Refused):
    """An array whose name or number of dimensions is not among those expected."""


class _Bounded:
    """A file's read/readline that never ask for more bytes than the file holds."""

    def __init__(self, f: BinaryIO, size: int):
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        if n > self._left:
            raise Refused(f"it declares {n} bytes where only {self._left} remain (truncated?)")
        data = self._f.read(self._left if n < 0 else n)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._f.readline(self._left)
        self._left -= len(line)
        return line


class _Node:
    """What `scan` knows of an object: how deep it nests, and whether it is nested."""

    __slots__ = ("depth", "nested")

    def __init__(self, depth: int = 0):
        self.depth, self.nested = depth, False


def _pop_operands(op: pickletools.OpcodeInfo, stack: list) -> list[_Node]:
    before, items = op.stack_before, []
    if before and before[-1] is pickletools.stackslice:  # everything down to the last MARK
        while stack and stack[-1] is not None:
            items.append(stack.pop())
        if not stack:
            raise Refused(f"{op.name} without a MARK")
        stack.pop()
        before = before[:-2]
    for _ in before:
        if not stack or stack[-1] is None:
            raise Refused(f"{op.name} on an empty stack")
        items.append(stack.pop())
    return items[::-1]


def _step(op: pickletools.OpcodeInfo, arg: Any, stack: list, memo: dict) -> None:
    name = op.name
    if name in _REFUSED_OPS:
        raise Refused(f"it uses the opcode {name}, which builds arbitrary objects")
    if name in _GETS:
        if arg not in memo:
            raise Refused(f"{name} of an undefined memo entry")
        stack.append(memo[arg])
        return
    if name in _PUTS or name == "MEMOIZE":
        if not stack or stack[-1] is None:
            raise Refused(f"{name} on an empty stack")
        memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
        return
    operands = _pop_operands(op, stack)
    inner = 1 + max((o.depth for o in operands), default=-1)
    if name in _MUTATORS:  # the target stays on the stack; what goes into it is nested
        target, operands = operands[0], operands[1:]
        if target.nested or any(o is target for o in operands):
            raise Refused("it changes an object after nesting it, or puts it in itself (a cycle)")
        target.depth = max(target.depth, 1 + max((o.depth for o in operands), default=-1))
        result = target
    else:
        result = _Node(inner)
    for o in operands:
        o.nested = True
    for after in op.stack_after:
        stack.append(None if after is pickletools.markobject else result)
    if result.depth > MAX_DEPTH:
        raise Refused(f"it nests objects more than {MAX_DEPTH} deep")


def scan(f: BinaryIO, size: int) -> None:
    """Walk one pickle's opcodes without building anything; Refused if it is unsafe to load.

    Leaves `f` just past the pickle's STOP.
    """
    stack: list[_Node | None] = []  # None is a MARK
    memo: dict[int, _Node] = {}
    marks = 0
    try:
        for op, arg, _ in pickletools.genops(_Bounded(f, size)):
            _step(op, arg, stack, memo)
            marks += (op.name == "MARK") - (pickletools.markobject in op.stack_before)
            if marks > MAX_DEPTH:
                raise Refused(f"it nests objects more than {MAX_DEPTH} deep")
            if len(stack) > MAX_STACK:
                raise Refused(f"it keeps more than {MAX_STACK} objects pending")
    except Refused:
        raise
    except (ValueError, EOFError) as e:  # genops: truncated, unknown opcode, bad argument
        raise Refused(f"it is truncated or not a pickle ({e})") from None


def scan_torch_file(path: str) -> None:
    """Check a `torch.save` file before `torch.load` builds it: a zip archive (whose entries
    must be stored, as torch writes them, so no entry can inflate) or the legacy format."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch's own test for its zip format
            f.seek(0)
            for _ in range(5):  # magic number, protocol, system info, the object, storage keys
                scan(f, size - f.tell())
            return
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                    raise Refused(f"its entry {info.filename} is compressed or larger than "
                                  "the file")
            for info in z.infolist():
                if info.filename.rsplit("/", 1)[-1] == "data.pkl":
                    with z.open(info) as f:
                        scan(f, info.file_size)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise Refused(f"it is not a readable archive ({e})") from None


# --------------------------------------------------------------------------- arrays

def numeric_dtype(code: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """`numpy.dtype` as a pickle calls it, for plain numbers only."""
    try:
        dtype = np.dtype(code) if isinstance(code, str) and len(code) <= 8 else None
    except TypeError:
        dtype = None
    if dtype is None or not _is_numeric(dtype):
        raise Refused(f"it declares the dtype {code!r:.40}, which is not a plain number type")
    return np.dtype(code, bool(align), bool(copy))


def _is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "fiu" and dtype.fields is None and dtype.subdtype is None


def latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """`_codecs.encode` as Python 3 pickles bytes at protocol 2; no other codec (one that
    expands its input, such as hex, applied repeatedly, is a bomb)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("it encodes data with a codec other than latin1")
    return codecs.encode(text, "latin1")


class NdarrayRef:
    """Stands for `numpy.ndarray` where a pickle names it: the first argument of
    `_reconstruct`. Called directly (which would allocate any shape), it refuses."""

    def __new__(cls, *args: Any) -> Any:
        raise Refused("it calls numpy.ndarray directly")


class CheckedArray(np.ndarray):
    """The empty array `ArrayBudget.empty` returns to unpicklers that call `__setstate__`
    themselves (torch's weights_only): its state is checked first. It cannot be made
    any other way."""

    budget: ArrayBudget

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise Refused("it builds an array directly")

    def __setstate__(self, state: Any) -> None:
        self.budget.check(state)
        super().__setstate__(state)


class ArrayBudget:
    """Checks each array's state before NumPy builds it; all arrays together may not
    declare more bytes than the file holds (a memo reference reused is no new data).

    `names`: when given, {name: number of dimensions} of the only arrays expected.
    """

    def __init__(self, size: int, names: Mapping[str, int] | None = None):
        self.left, self.names = size, names

    def empty(self, subtype: Any, shape: Any, code: Any) -> np.ndarray:
        """`numpy.core.multiarray._reconstruct` as NumPy pickles it: always an empty array
        (`subtype` is what `numpy.ndarray` resolves to: `NdarrayRef`)."""
        if subtype is not NdarrayRef or shape != (0,) or code not in (b"b", "b"):
            raise Refused("it rebuilds an array in a way NumPy never writes "
                          f"({getattr(subtype, '__name__', '?')}, shape {shape!r:.40})")
        return np.empty(0, np.int8)

    def checked_empty(self, subtype: Any, shape: Any, code: Any) -> CheckedArray:
        """`empty` for torch's weights_only unpickler: the array checks its own state."""
        array = self.empty(subtype, shape, code).view(CheckedArray)
        array.budget = self
        return array

    def torch_safe_globals(self) -> list:
        """What `torch.serialization.safe_globals` needs to read pickled NumPy arrays
        through this budget, and nothing that builds an array unchecked."""
        rebuild = self.checked_empty
        return [(NdarrayRef, "numpy.ndarray"), (numeric_dtype, "numpy.dtype"), CheckedArray,
                (rebuild, "numpy.core.multiarray._reconstruct"),  # pickled under NumPy 1
                (rebuild, "numpy._core.multiarray._reconstruct"),
                *{type(np.dtype(c)) for c in np.typecodes["AllFloat"] + np.typecodes["AllInteger"]
                  if np.dtype(c).kind in "fiu"}]

    def check(self, state: Any, name: Any = None) -> None:
        """Refused unless `state` (ndarray.__setstate__'s argument) holds exactly its data."""
        if not (isinstance(state, tuple) and len(state) == 5):
            raise Refused("an array's state is not (version, shape, dtype, order, data)")
        _, shape, dtype, _, data = state
        if not (isinstance(shape, tuple) and len(shape) <= MAX_NDIM
                and all(type(n) is int and n >= 0 for n in shape)):
            raise Refused(f"an array declares the shape {shape!r:.60}")
        if not isinstance(dtype, np.dtype) or not _is_numeric(dtype):
            raise Refused(f"an array's dtype is {dtype!r:.40}, not a plain number type")
        what = f"{name!r:.60}" if isinstance(name, str) else "an array"
        if self.names is not None and isinstance(name, str):
            if name not in self.names:
                raise Unexpected(f"unexpected {name:.60}")
            if len(shape) != self.names[name]:
                raise Unexpected(f"{name} has {len(shape)} dimensions, expected {self.names[name]}")
        nbytes = math.prod(shape) * dtype.itemsize
        if not isinstance(data, (bytes, str)) or len(data) != nbytes:
            held = len(data) if isinstance(data, (bytes, str)) else type(data).__name__
            raise Refused(f"{what} declares {math.prod(shape)} elements of {dtype} "
                          f"({nbytes} bytes) but holds {held}")
        if nbytes > self.left:
            raise Refused("its arrays declare more bytes than the file holds")
        self.left -= nbytes


def flat_dtype_state(dtype: np.dtype, state: Any) -> None:
    """A dtype's BUILD: a short tuple of plain values (no fields, no subarray)."""
    if not (isinstance(state, tuple) and len(state) <= 9
            and all(v is None or type(v) in (int, str, bytes) for v in state)):
        raise Refused(f"a dtype's state is {state!r:.60}")
    dtype.__setstate__(state)


class ArraysOnly(pickle._Unpickler):
    """The pure-Python unpickler (no C recursion; each BUILD and REDUCE can be checked),
    building NumPy arrays and plain containers only. Run `scan` on the file first.

    `encoding="latin1"` reads files written by Python 2 (NumPy's own rule for them).
    """

    def __init__(self, f: BinaryIO, size: int, names: Mapping[str, int] | None = None):
        super().__init__(_Bounded(f, size), encoding="latin1")
        self.budget = ArrayBudget(size, names)
        reconstruct = self.budget.empty
        self._globals = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): NdarrayRef,
            ("numpy", "dtype"): numeric_dtype,
            ("collections", "OrderedDict"): dict,
            ("_codecs", "encode"): latin1_bytes,
        }
        self._callables = {reconstruct, numeric_dtype, dict, latin1_bytes, NdarrayRef}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise Refused(f"it names {module:.60}.{name:.60}, which is neither a NumPy array "
                          "nor a plain container") from None

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if func not in self._callables or not isinstance(args, tuple):
            raise Refused(f"it calls {getattr(func, '__name__', type(func).__name__):.60}")
        self.stack[-1] = func(*args)

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray:
            # Entries of a dict are written key, value: the key is just below the array.
            self.budget.check(state, self.stack[-2] if len(self.stack) > 1 else None)
            inst.__setstate__(state)
        elif isinstance(inst, np.dtype):
            flat_dtype_state(inst, state)
        else:
            raise Refused(f"it sets the state of a {type(inst).__name__:.60}")

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build


def load_arrays(path: str, names: Mapping[str, int] | None = None) -> Any:
    """A pickle of NumPy arrays and plain containers -> the object; Refused (or OSError)
    before anything unsafe or oversized is built."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        scan(f, size)
        f.seek(0)
        return ArraysOnly(f, size, names).load()
