"""The registry of recurrent kinds: one frozen :class:`KindSpec` per kind, looked up by name.

A kind's torch-free facts (its state variables, the internals it computes per step and in which
order, each internal's activation and range, their docs, whether ``h`` is tanh-bounded) are
declared once, here, as data. Everything else asks the registry: dataset assembly (which state
variables a layer has), the analyses (which variables belong to a layer), storage (which
variables may be packed), interventions (whether a layer carries a cell state). The torch side
of a kind (which modules are of that kind, where their weights are, how calls reach the
recorder) is registered in :mod:`seqacts.capture.modules`; a front end that is not built on
torch modules registers only a :class:`KindSpec` and hands records to
:func:`seqacts.capture.assembly.close_group`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import KindError

__all__ = [
    "ACTIVATION_RANGE",
    "KindSpec",
    "activation_of",
    "base_kind",
    "find_kind",
    "has_cell_state",
    "kind_spec",
    "register_kind",
    "registered_kinds",
    "tanh_bounded_kinds",
    "variable_doc",
]

#: The closed range each activation's values cannot leave.
ACTIVATION_RANGE: Mapping[str, tuple[float, float]] = MappingProxyType(
    {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
)

#: The state variables a kind may carry: ``h`` alone, or ``h`` and a cell state ``c``.
STATE_NAMES: tuple[tuple[str, ...], ...] = (("h",), ("h", "c"))


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class KindSpec:
    """The torch-free facts of one recurrent kind.

    Parameters
    ----------
    name : str
        The kind's label, as the dataset's ``kind`` coordinate holds it (``"LSTM"``).
    base : str, optional
        The kind whose equations apply (``"LSTM"`` for ``"LSTMCell"``); default ``name``.
    states : tuple of str
        ``("h",)`` or ``("h", "c")``: the state the kind carries from step to step; ``c`` adds
        the ``c_0``/``c_n`` variables.
    internals : tuple of str
        The per-step variables it computes besides ``h``, in their dataset order.
    gates : tuple of str, optional
        The gates in their order of row chunks in the weights (PyTorch's i, f, g, o); default
        the internals that have an activation, or all but ``c``.
    activations : mapping
        Each internal's activation (``"sigmoid"``, ``"tanh"`` or ``None``); the range of its
        values follows (:data:`ACTIVATION_RANGE`), and storage packs bounded ones.
    docs : mapping
        ``name -> (long_name, description)`` of each internal, the equations it follows.
    tanh_bounded : bool
        Whether ``h`` is bounded to [-1, 1] by a tanh (without a projection).
    one_step : bool
        Whether one call is one timestep (a cell) rather than a whole sequence (a stack).
    by_nonlinearity : mapping
        The base kind per ``nonlinearity`` for a kind whose label does not say it (``RNNCell``).
    """

    name: str
    base: str = ""
    states: tuple[str, ...] = ("h",)
    internals: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()
    activations: Mapping[str, str | None] = field(default_factory=dict)
    docs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    tanh_bounded: bool = False
    one_step: bool = False
    by_nonlinearity: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise KindError(f"KindSpec: name must be a non-empty str, got {self.name!r}")
        set_(self, "base", self.base or self.name)
        set_(self, "states", tuple(self.states))
        set_(self, "internals", tuple(self.internals))
        if self.states not in STATE_NAMES:
            raise KindError(
                f"KindSpec {self.name!r}: states must be ('h',) or ('h', 'c'), got {self.states!r}")
        unknown = sorted(set(self.activations) - set(self.internals))
        bad = [a for a in self.activations.values() if a is not None and a not in ACTIVATION_RANGE]
        if unknown or bad:
            raise KindError(
                f"KindSpec {self.name!r}: activations name {unknown or bad} outside its internals "
                f"{self.internals} or the known activations {tuple(ACTIVATION_RANGE)}")
        if not self.gates:
            set_(self, "gates", tuple(n for n in self.internals if n != "c"))
        set_(self, "activations", _frozen({n: self.activations.get(n) for n in self.internals}))
        set_(self, "docs", _frozen(self.docs))
        set_(self, "by_nonlinearity", _frozen(self.by_nonlinearity))

    @property
    def has_cell_state(self) -> bool:
        """Whether the kind carries a cell state ``c`` (``c_0``/``c_n`` variables)."""
        return "c" in self.states

    def range_of(self, internal: str) -> tuple[float, float] | None:
        """The closed range of an internal's values; None when unbounded."""
        act = self.activations.get(internal)
        return ACTIVATION_RANGE[act] if act is not None else None


_LOCK = threading.Lock()
_KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec, *, replace: bool = False) -> KindSpec:
    """Add a kind to the registry (or confirm it is there with the same facts).

    Parameters
    ----------
    spec : KindSpec
        The kind's facts.
    replace : bool, default False
        Replace a kind registered under the same name with other facts.

    Returns
    -------
    KindSpec
        ``spec``.

    Raises
    ------
    KindError
        When a kind of that name is registered with other facts (and not ``replace``), or an
        internal's activation differs from the one another kind declares for the same name:
        a variable's range is one fact of the dataset, whatever layer holds it.
    """
    if not isinstance(spec, KindSpec):
        raise KindError(f"register_kind: expected a KindSpec, got {type(spec).__name__}")
    with _LOCK:
        old = _KINDS.get(spec.name)
        if old is not None and old != spec and not replace:
            raise KindError(
                f"register_kind: a kind {spec.name!r} is already registered with other facts; "
                "pick another name or pass replace=True")
        for other in _KINDS.values():
            if other.name == spec.name:
                continue
            clash = [n for n in spec.internals
                     if n in other.activations and other.activations[n] != spec.activations[n]]
            if clash:
                raise KindError(
                    f"register_kind: {spec.name!r} declares {clash[0]!r} with activation "
                    f"{spec.activations[clash[0]]!r}, but kind {other.name!r} declares it with "
                    f"{other.activations[clash[0]]!r}; give the variable another name")
        _KINDS[spec.name] = spec
    return spec


def find_kind(name: str) -> KindSpec | None:
    """The registered kind called ``name``, or None."""
    return _KINDS.get(str(name))


def kind_spec(name: str) -> KindSpec:
    """The registered kind called ``name``.

    Raises
    ------
    KindError
        When no kind of that name is registered; the message lists the registered ones.
    """
    spec = _KINDS.get(str(name))
    if spec is None:
        raise KindError(
            f"unknown kind {name!r}; registered kinds: {', '.join(_KINDS)} (add one with "
            "seqacts.kinds.register_kind)")
    return spec


def registered_kinds() -> tuple[str, ...]:
    """The names of every registered kind, in order of registration."""
    return tuple(_KINDS)


def base_kind(kind: str, nonlinearity: str = "tanh") -> str:
    """The kind whose equations apply: ``"LSTM"`` for ``"LSTMCell"``; ``RNNCell`` per
    ``nonlinearity``. An unregistered name is returned as is."""
    spec = _KINDS.get(str(kind))
    if spec is None:
        return str(kind)
    return spec.by_nonlinearity.get(nonlinearity, spec.base)


def has_cell_state(kind: str) -> bool:
    """Whether a kind carries a cell state ``c`` (False for an unregistered name)."""
    spec = _KINDS.get(str(kind))
    return spec is not None and spec.has_cell_state


def tanh_bounded_kinds() -> frozenset[str]:
    """The kinds whose ``h`` is bounded by tanh to [-1, 1] when there is no projection."""
    return frozenset(name for name, spec in _KINDS.items() if spec.tanh_bounded)


def variable_doc(name: str, kinds: Iterable[str]) -> tuple[str, str] | None:
    """``(long_name, description)`` of an internal as the first of ``kinds`` documents it."""
    for kind in kinds:
        spec = _KINDS.get(str(kind))
        if spec is not None and name in spec.docs:
            return spec.docs[name]
    return None


def activation_of(internal: str) -> str | None:
    """The activation of an internal variable, as its kinds declare it (None: unbounded)."""
    for spec in _KINDS.values():
        if internal in spec.activations:
            return spec.activations[internal]
    return None
