"""Find the recordable recurrent layers of a Keras 3 model, labelled by their Keras path.

A layer's label is the names of the layers that hold it, joined by ``/``, the root model left
out (``"encoder/lstm_1"``). An ``RNN(StackedRNNCells([...]))`` gives one label per cell,
``"<path>.l0"``, ``"<path>.l1"``; a ``Bidirectional`` one label with two directions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ..capture.specs import LayerSpec
from ..errors import ArgumentTypeError, LayerSelectionError, NoRecurrentModuleError
from ..kinds.keras_kinds import CELL_KINDS

__all__ = ["KerasLayer", "keras_layers", "recurrent_layers", "select_layers"]


@dataclass(frozen=True)
class KerasLayer:
    """One recurrent Keras layer (``RNN`` subclass or ``Bidirectional``) and its specs."""

    layer: Any
    path: str
    rnns: tuple[Any, ...]  # the RNN layer per direction (the Bidirectional's two, or itself)
    cells: tuple[Any, ...]  # the cells run per step (a StackedRNNCells' cells, or the cell)
    specs: tuple[LayerSpec, ...]


def _children(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _cells(rnn: Any) -> list[Any] | None:
    from keras.layers import StackedRNNCells

    cell = rnn.cell
    cells = list(cell.cells) if isinstance(cell, StackedRNNCells) else [cell]
    if any(type(c).__name__ not in CELL_KINDS for c in cells):
        return None
    return cells


def _entry(layer: Any, path: str) -> KerasLayer | None:
    from keras.layers import RNN, Bidirectional

    rnns: tuple[Any, ...]
    if isinstance(layer, Bidirectional):
        rnns = (layer.forward_layer, layer.backward_layer)
    elif isinstance(layer, RNN):
        rnns = (layer,)
    else:
        return None
    cells = _cells(rnns[0])
    if cells is None or _cells(rnns[-1]) is None:
        return None
    stacked = len(cells) > 1 or type(rnns[0].cell).__name__ == "StackedRNNCells"
    specs = tuple(
        LayerSpec(
            label=f"{path}.l{k}" if stacked else path, module_path=path,
            kind=CELL_KINDS[type(cell).__name__], index=k, n_units=int(cell.units),
            n_cell_units=int(cell.units), n_directions=len(rnns), is_cell=False,
        )
        for k, cell in enumerate(cells)
    )
    return KerasLayer(layer, path, rnns, tuple(cells), specs)


def _walk(layer: Any, prefix: str, seen: set[int]) -> Iterator[KerasLayer]:
    for child in _children(layer):
        if id(child) in seen:
            continue
        seen.add(id(child))
        path = f"{prefix}/{child.name}" if prefix else str(child.name)
        entry = _entry(child, path)
        if entry is not None:
            yield entry
        else:
            yield from _walk(child, path, seen)


def recurrent_layers(model: Any) -> list[KerasLayer]:
    """Every recordable recurrent layer of a Keras model, in the order Keras tracks them.

    Raises
    ------
    NoRecurrentModuleError
        When the model holds none; the message names the layer types it does hold.
    """
    root = _entry(model, str(model.name))
    found = [root] if root is not None else list(_walk(model, "", {id(model)}))
    if not found:
        types = sorted({type(x).__name__ for x in model._flatten_layers(include_self=True)})
        raise NoRecurrentModuleError(
            f"{type(model).__name__} {model.name!r} holds no recurrent Keras layer (LSTM, GRU, "
            "SimpleRNN, RNN over LSTMCell/GRUCell/SimpleRNNCell or StackedRNNCells of them, "
            f"Bidirectional of these); layer types found: {', '.join(types)}"
        )
    return found


def keras_layers(model: Any) -> list[str]:
    """The recordable layer labels of a Keras model (what ``layers=`` accepts)."""
    return [s.label for entry in recurrent_layers(model) for s in entry.specs]


def _matches(name: str, spec: LayerSpec) -> bool:
    return name in (spec.label, spec.module_path) or fnmatchcase(spec.label, name) or (
        fnmatchcase(spec.module_path, name))


def select_layers(model: Any, names: Iterable[str] | None) -> list[KerasLayer]:
    """Resolve ``layers=`` (labels, layer paths or fnmatch patterns) for a Keras model.

    A layer whose specs are only partly selected is still run whole (a stacked RNN's cells
    depend on each other); only the selected specs are kept.
    """
    found = recurrent_layers(model)
    if names is None:
        return found
    wanted = list(names)
    if not wanted:
        raise LayerSelectionError("layers: empty selection; pass None to record every layer")
    bad = [n for n in wanted if not isinstance(n, str)]
    if bad:
        raise ArgumentTypeError(f"layers: expected names as strings, got {bad[0]!r}")
    every = [s for e in found for s in e.specs]
    unmatched = [n for n in wanted if not any(_matches(n, s) for s in every)]
    if unmatched:
        raise LayerSelectionError(
            f"layers: no layer matches {', '.join(map(repr, unmatched))}; available: "
            f"{', '.join(s.label for s in every)}"
        )
    out = []
    for entry in found:
        keep = tuple(s for s in entry.specs if any(_matches(n, s) for n in wanted))
        if keep:
            out.append(KerasLayer(entry.layer, entry.path, entry.rnns, entry.cells, keep))
    return out
