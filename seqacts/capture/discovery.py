"""Find the recordable layers of a model and resolve ``layers=`` / ``modules=`` selections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

import torch
from torch import nn

from ..errors import (
    ArgumentTypeError,
    LayerSelectionError,
    NoRecurrentModuleError,
    UnsupportedModelError,
)
from ..keras import is_keras_model
from ..kinds.builtin import user_cell_label
from .modules import kind_of, layer_specs, module_kind, parse_state
from .specs import LayerSpec, cell_layer

__all__ = [
    "by_first_weight", "layers", "recurrent_layers", "select_cells", "select_layers",
    "select_modules",
]


def recurrent_layers(
    model: nn.Module, *, required: bool = True
) -> list[tuple[nn.Module, list[LayerSpec]]]:
    """Every recurrent module of ``model`` with its layer specs, in module order.

    Raises
    ------
    NoRecurrentModuleError
        When the model holds no recurrent module (unless not ``required``: then ``[]``); the
        message names the types it does hold and what to pass for a recurrence in Python.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(
            f"seqacts needs a torch.nn.Module, got {type(model).__name__}; "
            "pass the model object itself, not its output or state_dict"
        )
    _check_eager(model)
    found = [
        (module, layer_specs(path, module))
        for path, module in model.named_modules()
        if kind_of(module) is not None
    ]
    if not found and required:
        types = sorted({type(m).__name__ for m in model.modules()})
        scripted = [path or "the model" for path, m in model.named_modules()
                    if isinstance(m, torch.jit.ScriptModule)]
        if scripted:
            raise UnsupportedModelError(
                f"{type(model).__name__}: {', '.join(scripted[:5])} is TorchScript "
                "(torch.jit.script/trace), whose recurrent kernels run outside Python and cannot "
                "be recorded; record the eager nn.Module before scripting it")
        raise NoRecurrentModuleError(
            f"{type(model).__name__} holds no recurrent module (nn.RNN, nn.LSTM, nn.GRU, "
            f"nn.RNNCell, nn.LSTMCell, nn.GRUCell); module types found: {', '.join(types)}. "
            "For a recurrence written in Python, name its per-step cell with "
            "cells={'<path>': 'h'} (or 'h,c'), or record module outputs with modules=[...]"
        )
    return found


def by_first_weight(
    found: Iterable[tuple[nn.Module, list[LayerSpec]]],
) -> dict[int, tuple[nn.Module, list[LayerSpec]]]:
    """Index recurrent modules by the id of their first weight.

    That tensor (``weight_ih_l0``, or a cell's ``weight_ih``; as the module's
    :class:`~seqacts.capture.modules.ModuleKind` says) is what a kernel call receives, so a
    call is traced back to its module through this index. Python cells have none.

    Parameters
    ----------
    found : iterable of (module, specs)
        As :func:`recurrent_layers` returns them.

    Returns
    -------
    dict
        ``id(first weight) -> (module, specs)``; modules without weights are left out.
    """
    index = {}
    for module, specs in found:
        mk = module_kind(module)
        first = mk.first_weight(module) if mk is not None and mk.via_kernel else None
        if first is not None:
            index[id(first)] = (module, specs)
    return index


def _check_eager(model: nn.Module) -> None:
    """Raise for TorchScript and ``torch.compile`` models, whose kernels seqacts cannot see."""
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            f"{type(model).__name__} is a TorchScript module (torch.jit.script/trace): its "
            "recurrent kernels run outside Python and cannot be recorded; record the eager "
            "nn.Module it was made from (before torch.jit.script)")
    for path, module in model.named_modules():
        if isinstance(getattr(module, "_orig_mod", None), nn.Module):
            where = f"model.{path}" if path else "model"
            raise UnsupportedModelError(
                f"{where} is a torch.compile'd module ({type(module).__name__}): compiled code "
                f"cannot be recorded; record the eager module it wraps, {where}._orig_mod "
                "(it shares the weights), e.g. seqacts.extract(model._orig_mod, x)")


def layers(model: nn.Module) -> list[str]:
    """List the recordable layer labels of a model, in module order.

    Parameters
    ----------
    model : torch.nn.Module
        Any module holding ``nn.RNN/LSTM/GRU`` stacks or recurrent cells.

    Returns
    -------
    list of str
        ``"<module path>.l<k>"`` for layer k of a stack (``"l<k>"`` when the model itself is
        the stack) and ``"<module path>"`` for a cell: the values ``layers=`` accepts. For a
        Keras 3 model, the layers' Keras paths (``"encoder/lstm_1"``, ``"<path>.l<k>"`` for
        the cells of a ``StackedRNNCells``).
    """
    if is_keras_model(model):
        from ..keras.api import layers as keras_layers

        return keras_layers(model)
    return [spec.label for _, specs in recurrent_layers(model) for spec in specs]


def _as_names(names: str | Iterable[str], option: str) -> list[str]:
    if isinstance(names, str):
        return [names]
    names = list(names)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ArgumentTypeError(
            f"{option}: expected names as strings, got {bad[0]!r}; e.g. {option}=[\"l0\"]"
        )
    return names


def select_layers(
    model: nn.Module, names: str | Iterable[str] | None,
    found: list[tuple[nn.Module, list[LayerSpec]]] | None = None, option: str = "layers",
) -> list[tuple[nn.Module, list[LayerSpec]]]:
    """Resolve ``layers=`` into the recurrent modules to watch and their selected layer specs.

    A name selects a layer by its label, every layer of a module by the module's path (or a
    container's path above it), or any label or path matching it as an fnmatch pattern
    (``"encoder.*"``). ``found``: the model's :func:`recurrent_layers`, when known; ``option``
    names the option in errors.
    """
    found = recurrent_layers(model) if found is None else found
    if names is None:
        return found
    wanted = _as_names(names, option)
    if not wanted:
        raise LayerSelectionError(f"{option}: empty selection; pass None to record every layer")
    unmatched = [
        name
        for name in wanted
        if not any(_matches(name, spec) for _, specs in found for spec in specs)
    ]
    if unmatched:
        available = ", ".join(spec.label for _, specs in found for spec in specs)
        raise LayerSelectionError(
            f"{option}: no layer matches {', '.join(repr(n) for n in unmatched)}; "
            f"available: {available}"
        )
    selected = []
    for module, specs in found:
        keep = [s for s in specs if any(_matches(name, s) for name in wanted)]
        if keep:
            selected.append((module, keep))
    return selected


def _matches(name: str, spec: LayerSpec) -> bool:
    """``name`` is the layer's label, its module's path or a container's path above it (a
    ``ModuleList`` of cells, a ``Sequential`` of LSTMs), or an fnmatch pattern of either."""
    return (
        name in (spec.label, spec.module_path)
        or (bool(name) and spec.module_path.startswith(name + "."))
        or fnmatchcase(spec.label, name)
        or (bool(spec.module_path) and fnmatchcase(spec.module_path, name))
    )


def select_modules(
    model: nn.Module, names: str | Iterable[str] | None, option: str = "modules"
) -> list[tuple[str, nn.Module]]:
    """Resolve ``modules=`` (paths or fnmatch patterns) into ``(path, module)`` pairs.

    The root model itself is named ``"model"``; errors name ``option``.
    """
    if names is None:
        return []
    wanted = _as_names(names, option)
    named = [(path or "model", module) for path, module in model.named_modules()]
    unmatched = [n for n in wanted if not any(fnmatchcase(p, n) for p, _ in named)]
    if unmatched:
        paths = [p for p, _ in named]
        shown = ", ".join(paths[:40]) + (f", ... ({len(paths) - 40} more)" if len(paths) > 40 else "")
        raise LayerSelectionError(
            f"{option}: no module matches {', '.join(repr(n) for n in unmatched)}; "
            f"available module paths: {shown}"
        )
    return [(p, m) for p, m in named if any(fnmatchcase(p, n) for n in wanted)]


def select_cells(
    model: nn.Module, cells: Mapping[str, str] | None
) -> list[tuple[nn.Module, list[LayerSpec]]]:
    """Resolve ``cells=`` (path or fnmatch pattern -> ``"h"`` / ``"h,c"``) into Python cells.

    Each matched module gets one hooked layer spec of kind ``cell(h)`` or ``cell(h,c)``; the
    root model is named ``"model"``.
    """
    if cells is None:
        return []
    states = {name: parse_state(state, f"cells[{name!r}]") for name, state in cells.items()}
    selected = {id(m): (p, m) for p, m in select_modules(model, list(states), "cells")}
    out = []
    for path, module in selected.values():
        names = next(s for n, s in states.items() if fnmatchcase(path, n))
        out.append((module, cell_layer("" if module is model else path, module,
                                        user_cell_label(names), hooked=True)))
    return out
