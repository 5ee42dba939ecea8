"""The second wall around snapshots: an unpickler that builds River models and nothing else.

A pickle can only call what it names: every class and function it uses comes through
:meth:`pickle.Unpickler.find_class`, so refusing a name there refuses everything a hostile pickle
could do with it. The signature is the first wall (only the key holder writes snapshots a process
loads); this one bounds what a leaked key, or an operator's unsigned opt-in, can reach.

What resolves, and why (found by unpickling every preset and ~100 River estimators after
learning, see tests/unit/test_unpickler.py):

- River's own classes and functions (``river.*``; pickle needs a few functions too, such as
  ``GaussianNB._make_gaussian`` inside ``functools.partial``), except the subpackages in
  :data:`DENIED_RIVER`. The rest of River is the code the worker runs on every reading anyway;
  the denied parts are the ones whose job is I/O or running other code: datasets download and
  read files, ``stream`` reads files and databases, ``checks`` unpickles without limits,
  ``compat`` bridges to other frameworks, ``evaluate`` and bandit environments drive datasets.
- Exact names from the standard library and numpy (:data:`SAFE`): value types, containers,
  ``random.Random``, ``functools.partial``, ``copy.deepcopy`` (defaultdict factories), and the
  numpy pieces that rebuild arrays, scalars and random generators (both numpy 1 and 2 spell
  them). River models keep no scipy object, so nothing of scipy resolves.
- Classes and functions defined in the module of a ``module:factory`` model and in the modules
  an operator lists (``snapshot_allowed_modules``); never a standard-library module, numpy or
  scipy there, whose functions read files, start processes or load pickles.
- ``builtins.getattr`` never resolves to getattr: pickle spells a bound method (River keeps a
  few, e.g. ``rng.gauss``) as ``getattr(obj, "name")``, so that name gets :meth:`Allowlist.
  bound_method`, which returns only a bound method of an instance of an allowed class.

Names whose parts start with ``__`` never resolve through the module rules (``__globals__``,
``__class__``, ``__subclasses__``, ...), and what resolves must be a class or a function defined
in an allowed module, so an allowed module's imports (``river.x.os.system``) do not leak
through. A pickle may also BUILD a resolved class or function, i.e. set attributes on it for the
whole process; no legitimate model does, so :func:`restricted_load` puts every resolved name
back as it was and refuses the snapshot.
"""

from __future__ import annotations

import importlib
import pickle
import random
import sys
import types
from collections.abc import Iterable
from typing import IO, Any

from riverflow.errors import ConfigError, SnapshotError

_NUMPY_ARRAYS = frozenset({"_reconstruct", "scalar"})
SAFE: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "bool",
            "bytearray",
            "bytes",
            "complex",
            "dict",
            "float",
            "frozenset",
            "int",
            "iter",  # iterators over lists (OutputCodeClassifier)
            "list",
            "set",
            "slice",
            "str",
            "tuple",
        }
    ),
    "collections": frozenset({"Counter", "OrderedDict", "defaultdict", "deque"}),
    "copy": frozenset({"deepcopy"}),
    "datetime": frozenset({"date", "datetime", "time", "timedelta", "timezone"}),
    "functools": frozenset({"partial"}),
    "random": frozenset({"Random"}),
    "statistics": frozenset({"NormalDist"}),
    "numpy": frozenset({"array", "dtype", "ndarray", "ones", "zeros"}),
    "numpy.core.multiarray": _NUMPY_ARRAYS,
    "numpy._core.multiarray": _NUMPY_ARRAYS,
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.random._pickle": frozenset(
        {"__bit_generator_ctor", "__generator_ctor", "__randomstate_ctor"}
    ),
    "numpy.random._mt19937": frozenset({"MT19937"}),
    "numpy.random._pcg64": frozenset({"PCG64", "PCG64DXSM"}),
    "numpy.random._philox": frozenset({"Philox"}),
    "numpy.random._sfc64": frozenset({"SFC64"}),
    "numpy.random.bit_generator": frozenset({"SeedSequence", "__pyx_unpickle_SeedSequence"}),
}
DENIED_RIVER = (
    "river.datasets",
    "river.stream",
    "river.checks",
    "river.compat",
    "river.evaluate",
    "river.bandit.datasets",
    "river.bandit.envs",
    "river.bandit.evaluate",
)
# Where riverflow 0.1.0 had its own packages before they were installed under riverflow.*.
_MOVED = ("online_model",)
# Modules an operator may not add: their functions reach files, processes or pickle.load.
_NEVER_ADDED = frozenset(sys.stdlib_module_names) | {"numpy", "scipy"}


def _within(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _forbidden(what: str) -> SnapshotError:
    return SnapshotError("forbidden_class", f"snapshot refers to {what}, which may not be loaded")


class Allowlist:
    """Which names a snapshot may resolve: River, :data:`SAFE`, and ``modules``.

    >>> Allowlist().resolve("river.optim.sgd", "SGD").__name__
    'SGD'
    >>> Allowlist().resolve("os", "system")
    Traceback (most recent call last):
    riverflow.errors.SnapshotError: snapshot refers to os.system, which may not be loaded
    """

    def __init__(self, modules: Iterable[str] = ()) -> None:
        self.modules = tuple(dict.fromkeys(m.strip() for m in modules if m.strip()))
        for module in self.modules:
            if module.split(".")[0] in _NEVER_ADDED or _within(module, DENIED_RIVER):
                raise ConfigError(
                    f"snapshot_allowed_modules: {module!r} may not be allowed (a snapshot could "
                    "then reach files or processes); list only the modules that define your "
                    "model's classes"
                )

    def allows_module(self, module: str) -> bool:
        """Whether ``module`` is River (outside :data:`DENIED_RIVER`) or in ``modules``."""
        if _within(module, ("river",)):
            return not _within(module, DENIED_RIVER)
        return _within(module, self.modules)

    def defines(self, obj: Any) -> bool:
        """Whether ``obj`` was defined in an allowed module (not merely imported into one)."""
        module = getattr(obj, "__module__", None)
        return isinstance(module, str) and self.allows_module(module)

    def resolve(self, module: str, name: str) -> Any:
        """What ``module.name`` in a pickle stands for, or :class:`SnapshotError`
        (``forbidden_class``)."""
        if name in SAFE.get(module, ()):
            return getattr(importlib.import_module(module), name)
        if (module, name) == ("builtins", "getattr"):
            return self.bound_method
        parts = name.split(".")
        if any(p.startswith("__") for p in parts) or not self.allows_module(module):
            raise _forbidden(f"{module}.{name}")
        obj: Any = importlib.import_module(module)
        for part in parts:
            obj = getattr(obj, part)
        if not isinstance(obj, type | types.FunctionType) or not self.defines(obj):
            raise _forbidden(f"{module}.{name}")
        return obj

    def bound_method(self, obj: Any, name: str) -> Any:
        """The stand-in for ``getattr`` in a pickle: a bound method of an allowed instance."""
        kind = type(obj)
        allowed = kind is random.Random or (self.defines(kind) and not isinstance(obj, type))
        if not allowed or not isinstance(name, str) or name.startswith("__"):
            raise _forbidden(f"getattr({kind.__module__}.{kind.__qualname__}, {name!r})")
        attr = getattr(obj, name)
        if getattr(attr, "__self__", None) is not obj or not callable(attr):
            raise _forbidden(f"getattr({kind.__module__}.{kind.__qualname__}, {name!r})")
        return attr


# What a BUILD opcode can change on a class or function besides its __dict__.
_FIELDS: dict[type, tuple[str, ...]] = {
    types.FunctionType: (
        "__code__",
        "__defaults__",
        "__kwdefaults__",
        "__name__",
        "__qualname__",
        "__module__",
        "__doc__",
        "__annotations__",
    ),
    type: ("__name__", "__qualname__", "__bases__", "__class__"),
}


_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: built-in and C types refuse setattr


class _Global:
    """A resolved class or function as it was before the pickle could touch it."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.mutable = not (isinstance(obj, type) and obj.__flags__ & _IMMUTABLE_TYPE)
        fields = next((f for kind, f in _FIELDS.items() if isinstance(obj, kind)), ())
        self.fields = {f: getattr(obj, f) for f in fields} if self.mutable else {}
        self.attrs = dict(getattr(obj, "__dict__", {})) if self.mutable else {}

    def restore(self) -> bool:
        """Put back whatever changed; whether anything had."""
        obj, changed = self.obj, False
        if not self.mutable:
            return False
        for field, value in self.fields.items():
            if getattr(obj, field) is not value:
                setattr(obj, field, value)
                changed = True
        now = dict(getattr(obj, "__dict__", {}))
        for key in now.keys() - self.attrs.keys():
            delattr(obj, key)
            changed = True
        for key, value in self.attrs.items():
            if now.get(key, self) is not value:
                setattr(obj, key, value)
                changed = True
        return changed


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: IO[bytes], allow: Allowlist) -> None:
        super().__init__(stream)
        self.allow = allow
        self.resolved: dict[int, _Global] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Snapshots written before the packages moved under ``riverflow`` name the evaluation
        # classes by their old module; the same classes, checked against the same list.
        if _within(module, _MOVED):
            module = f"riverflow.{module}"
        obj = self.allow.resolve(module, name)
        if id(obj) not in self.resolved:
            self.resolved[id(obj)] = _Global(obj)
        return obj


def restricted_load(stream: IO[bytes], allow: Allowlist) -> Any:
    """Unpickle the next pickle of ``stream``, resolving only what ``allow`` permits.

    Raises :class:`SnapshotError` (``forbidden_class``) for a name outside the list, or for a
    pickle that changed a class or function it resolved (which is then put back); any other
    exception means the pickle is broken.
    """
    unpickler = _Unpickler(stream, allow)
    try:
        model = unpickler.load()
    finally:
        tampered = [g.obj for g in unpickler.resolved.values() if g.restore()]
    if tampered:
        names = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in tampered)
        raise SnapshotError("forbidden_class", f"snapshot tried to modify {names}")
    return model
