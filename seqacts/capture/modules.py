"""Which torch modules are recurrent, of which kind, and how their calls reach the recorder.

The torch side of a kind, registered once per module class as a :class:`ModuleKind`: which
modules it covers, the kind label (a name in :mod:`seqacts.kinds`), the layers a module has,
the weight a kernel call is traced back by (:func:`seqacts.capture.discovery.by_first_weight`),
and whether the module's calls are seen through a ``torch._VF`` kernel (PyTorch's modules) or
through the module's own call (Python cells: :func:`register_cell`, ``cells=``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from ..errors import ArgumentTypeError, OptionError
from ..kinds import builtin, find_kind, register_kind
from .specs import LayerSpec, cell_layer, stack_layers

__all__ = [
    "ModuleKind",
    "STATES",
    "is_cell",
    "is_stack",
    "kind_of",
    "layer_specs",
    "module_kind",
    "parse_state",
    "register_cell",
    "register_module_kind",
    "unregister_module_kinds",
]

#: The states a Python cell may declare, as ``cells=`` and :func:`register_cell` spell them.
STATES: dict[str, tuple[str, ...]] = {"h": ("h",), "h,c": ("h", "c")}


@dataclass(frozen=True)
class ModuleKind:
    """How the modules of one kind are recognised, split into layers and reached.

    Parameters
    ----------
    matches : callable
        ``matches(module) -> bool``.
    kind : callable
        ``kind(module) -> str``: the kind's label, registered in :mod:`seqacts.kinds`.
    layers : callable
        ``layers(path, module, kind) -> list[LayerSpec]``.
    first_weight : callable
        ``first_weight(module) -> Tensor | None``: the tensor a kernel call receives first.
    via_kernel : bool
        Calls are seen through ``torch._VF``'s kernels; False: through the module's own call,
        its returned state recorded as it is (a Python cell).
    cls : type, optional
        The class it was registered for (:func:`register_cell`), to unregister it by.
    """

    matches: Callable[[nn.Module], bool]
    kind: Callable[[nn.Module], str]
    layers: Callable[[str, nn.Module, str], list[LayerSpec]]
    first_weight: Callable[[nn.Module], Tensor | None]
    via_kernel: bool = True
    cls: type | None = None


def _stack_weight(module: nn.Module) -> Tensor | None:
    flat = getattr(module, "_flat_weights", None)
    return flat[0] if flat else None


def _cell_weight(module: nn.Module) -> Tensor | None:
    weight = getattr(module, "weight_ih", None)
    return weight if isinstance(weight, Tensor) else None


def _no_weight(module: nn.Module) -> Tensor | None:
    return None


def _hooked_cell(path: str, module: nn.Module, kind: str) -> list[LayerSpec]:
    return cell_layer(path, module, kind, hooked=True)


def _class_kind(cls: type[nn.Module], via_kernel: bool, kind: str | None = None) -> ModuleKind:
    label = kind or cls.__name__
    return ModuleKind(
        matches=lambda m: isinstance(m, cls),
        kind=lambda m: label,
        layers=cell_layer if via_kernel else _hooked_cell,
        first_weight=_cell_weight if via_kernel else _no_weight,
        via_kernel=via_kernel,
        cls=cls,
    )


_STACK = ModuleKind(
    matches=lambda m: isinstance(m, nn.RNNBase),
    kind=lambda m: str(m.mode),
    layers=stack_layers,
    first_weight=_stack_weight,
)

_LOCK = threading.Lock()
#: Searched first to last: classes registered later come first, so a subclass registered as a
#: Python cell takes precedence over its torch base class.
_MODULE_KINDS: list[ModuleKind] = [
    _STACK,
    *(_class_kind(getattr(nn, k.name), via_kernel=True) for k in builtin.CELL_KINDS),
]


def register_module_kind(module_kind: ModuleKind) -> ModuleKind:
    """Register the torch side of a kind; it takes precedence over those registered before.

    The kind labels it gives must be registered in :mod:`seqacts.kinds` (checked on use).
    """
    if not isinstance(module_kind, ModuleKind):
        raise ArgumentTypeError(
            f"register_module_kind: expected a ModuleKind, got {type(module_kind).__name__}")
    with _LOCK:
        _MODULE_KINDS.insert(0, module_kind)
    return module_kind


def unregister_module_kinds(cls: type) -> int:
    """Remove what :func:`register_cell` registered for ``cls``; returns how many entries."""
    with _LOCK:
        before = len(_MODULE_KINDS)
        _MODULE_KINDS[:] = [mk for mk in _MODULE_KINDS if mk.cls is not cls or mk.via_kernel]
        return before - len(_MODULE_KINDS)


def module_kind(module: nn.Module) -> ModuleKind | None:
    """The registered :class:`ModuleKind` covering ``module``, or None (not recurrent)."""
    for mk in list(_MODULE_KINDS):
        if mk.matches(module):
            return mk
    return None


def kind_of(module: nn.Module) -> str | None:
    """The seqacts kind of a module, or None when it is not recurrent."""
    mk = module_kind(module)
    return mk.kind(module) if mk is not None else None


def layer_specs(path: str, module: nn.Module) -> list[LayerSpec]:
    """All layer specs of one recurrent module at ``path`` (``""`` for the root); [] if none."""
    mk = module_kind(module)
    if mk is None:
        return []
    return mk.layers(path, module, mk.kind(module))


def is_stack(module: object) -> bool:
    """Whether ``module`` is a fused stack (``nn.RNN/LSTM/GRU``): one call runs a sequence,
    with ``batch_first``, ``num_layers`` and inter-layer ``dropout``."""
    return isinstance(module, nn.Module) and module_kind(module) is _STACK


def is_cell(module: object) -> bool:
    """Whether ``module`` is a recurrent cell: one call is one timestep."""
    if not isinstance(module, nn.Module):
        return False
    kind = kind_of(module)
    spec = find_kind(kind) if kind is not None else None
    return spec is not None and spec.one_step


def parse_state(state: object, where: str) -> tuple[str, ...]:
    """``"h"`` or ``"h,c"`` (spaces ignored) as state names; the error names ``where``."""
    text = state.replace(" ", "") if isinstance(state, str) else state
    if text not in STATES:
        raise OptionError(
            f"{where}: the state must be \"h\" (the cell returns h) or \"h,c\" (it returns a "
            f"tuple (h, c)), got {state!r}")
    return STATES[str(text)]


def register_cell(cls: type[nn.Module], *, state: str = "h", kind: str | None = None) -> str:
    """Record every module of class ``cls`` as a Python cell, in every model.

    A Python cell is any module called once per step as ``cell(x_t, state) -> state``; seqacts
    records it from the state it returns (no kernel is involved), like a module named in
    ``cells=`` (see :func:`seqacts.record`).

    Parameters
    ----------
    cls : type
        An ``nn.Module`` subclass (a subclass of ``nn.LSTMCell`` whose forward has its own math
        included: registered classes take precedence).
    state : {"h", "h,c"}
        What the cell receives and returns: a tensor ``h`` (batch, hidden), or a tuple
        ``(h, c)``.
    kind : str, optional
        The label of the dataset's ``kind`` coordinate for its layers; default ``"cell(h)"``
        or ``"cell(h,c)"``. A new label is registered in :mod:`seqacts.kinds`.

    Returns
    -------
    str
        The kind label.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ArgumentTypeError(
            f"register_cell: expected an nn.Module subclass, got {cls!r}; pass the class, "
            "e.g. seqacts.register_cell(MyCell, state=\"h,c\")")
    names = parse_state(state, "register_cell")
    label = kind if kind is not None else builtin.user_cell_label(names)
    register_kind(builtin.user_cell_kind(label, names))  # the same facts again: a no-op
    register_module_kind(_class_kind(cls, via_kernel=False, kind=label))
    return label
