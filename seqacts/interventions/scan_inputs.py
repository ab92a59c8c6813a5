"""The inputs of an ablation scan: the model's arguments as one batch, repeatable per unit.

A scan calls the model with its batch repeated once per unit of a chunk. The arguments may be
a tensor (``model(x)``), a tuple or list (``model(*x)``) or a dict (``model(**x)``, e.g. a
DataLoader batch); each argument is a tensor, a tuple, list or dict of values (one level
deep), or any other value. The rule for which tensors hold samples:

- the first tensor, in argument order, sets the number of samples ``n``: its size along dim 0,
  or dim 1 when the model is itself a sequence-first ``nn.RNN``/``nn.LSTM``/``nn.GRU``;
- every other tensor is repeated along its one dim of size ``n`` (an ``nn.LSTM``'s ``h0`` of
  shape ``(layers, n, hidden)`` along dim 1, ``lengths`` along dim 0); a tensor with no dim of
  size ``n`` and every non-tensor value are passed unchanged to every forward;
- a tensor with several dims of size ``n`` is ambiguous, and a numpy array with a dim of size
  ``n`` most likely a tensor passed as numpy: both raise :class:`EditError`;
  ``batch_dims`` then names the dim per argument (``{1: 1}``, ``{"h0": 1}``; ``None`` passes the
  argument unchanged), and overrides the rule for any argument it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..capture.modules import is_stack
from ..errors import EditError

__all__ = ["Key", "ScanInputs", "batch_dim", "scan_inputs"]

#: An argument of the model: its position (``model(*x)``) or its name (``model(**x)``).
Key = int | str
#: Where a tensor sits: its argument, then its place inside that argument when nested.
Path = tuple[Any, ...]


def batch_dim(model: nn.Module) -> int:
    """The dim of ``model``'s input that holds samples: 1 for a sequence-first ``nn.RNNBase``."""
    return 1 if is_stack(model) and not model.batch_first else 0


@dataclass(frozen=True)
class ScanInputs:
    """The model's arguments and, for every tensor that holds samples, the dim holding them."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    n: int
    dim: int
    first_path: Path
    dims: dict[Path, int]

    @property
    def first(self) -> Tensor:
        """The tensor that sets the number of samples (outputs are cut along its ``dim``)."""
        return _tensor_at(self, self.first_path)

    def __call__(self, model: nn.Module) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)

    def repeated(self, copies: int) -> ScanInputs:
        """The same arguments with every sample-holding tensor repeated ``copies`` times."""
        args = tuple(self._repeat((i,), v, copies) for i, v in enumerate(self.args))
        kwargs = {k: self._repeat((k,), v, copies) for k, v in self.kwargs.items()}
        return ScanInputs(args, kwargs, self.n * copies, self.dim, self.first_path, self.dims)

    def with_first(self, value: Tensor) -> ScanInputs:
        """The same arguments with the first sample-holding tensor replaced by ``value``."""
        path = self.first_path

        def put(container: Any, rest: Path) -> Any:
            if not rest:
                return value
            parts = [(k, put(v, rest[1:]) if k == rest[0] else v) for k, v in _children(container)]
            return _rebuild(container, [v for _, v in parts])

        args, kwargs = list(self.args), dict(self.kwargs)
        if isinstance(path[0], int):
            args[path[0]] = put(args[path[0]], path[1:])
        else:
            kwargs[path[0]] = put(kwargs[path[0]], path[1:])
        return ScanInputs(tuple(args), kwargs, self.n, self.dim, path, self.dims)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors that are repeated, for one copy of the batch."""
        return sum(_tensor_at(self, path).nbytes for path in self.dims)

    def _repeat(self, path: Path, value: Any, copies: int) -> Any:
        if path in self.dims:
            return torch.cat([value] * copies, dim=self.dims[path])
        children = _children(value)
        if not children or not any(path + (k,) in self.dims for k, _ in children):
            return value
        return _rebuild(value, [self._repeat(path + (k,), v, copies) for k, v in children])


def _children(value: Any) -> list[tuple[Any, Any]]:
    """The parts of a container argument (a tuple, list or dict), none for anything else."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, (tuple, list)) and not isinstance(value, PackedSequence):
        return list(enumerate(value))
    return []


def _holds_tensor(value: Any) -> bool:
    return isinstance(value, Tensor) or any(_holds_tensor(v) for _, v in _children(value))


def _rebuild(container: Any, values: list[Any]) -> Any:
    if isinstance(container, Mapping):
        return dict(zip(container.keys(), values, strict=True))
    if hasattr(container, "_fields"):  # a namedtuple takes its fields as arguments
        return type(container)(*values)
    return type(container)(values)


def _tensor_at(inputs: ScanInputs, path: Path) -> Tensor:
    value: Any = inputs.args[path[0]] if isinstance(path[0], int) else inputs.kwargs[path[0]]
    for key in path[1:]:
        value = value[key]
    return value


def _where(name: str, path: Path, single: bool) -> str:
    return name if single else name + "".join(f"[{k!r}]" for k in path)


def _tensors(
    name: str, arguments: list[tuple[Key, Any]], single: bool
) -> tuple[list[tuple[Path, Tensor]], list[tuple[Path, Any]]]:
    """Every tensor among the arguments, in order, by path, and every array (numpy and the
    like) that is no tensor; checks the nesting depth."""
    found: list[tuple[Path, Tensor]] = []
    arrays: list[tuple[Path, Any]] = []

    def visit(path: Path, value: Any, depth: int) -> None:
        if isinstance(value, PackedSequence):
            raise EditError(
                f"{_where(name, path, single)}: a PackedSequence cannot be repeated per unit; "
                "pass the padded batch and its lengths and pack them inside the model "
                "(pack_padded_sequence(x, lengths, enforce_sorted=False))"
            )
        if isinstance(value, Tensor):
            found.append((path, value))
            return
        if hasattr(value, "__array__") and isinstance(getattr(value, "shape", None), tuple):
            arrays.append((path, value))
            return
        children = _children(value)
        if children and depth == 2:
            if _holds_tensor(value):
                raise EditError(
                    f"{_where(name, path, single)}: arguments nested more than one level deep "
                    "are not searched for samples; pass the inner values as arguments of their "
                    "own (a flat tuple or dict) and rebuild the structure inside the model"
                )
            return
        for key, child in children:
            visit(path + (key,), child, depth + 1)

    for key, value in arguments:
        visit((key,), value, 1)
    return found, arrays


def _arguments(name: str, x: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(x, PackedSequence):
        _tensors(name, [(0, x)], True)  # raises the PackedSequence error
    if isinstance(x, Tensor):
        return (x,), {}
    if isinstance(x, Mapping):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise EditError(
                f"{name}: a dict passes keyword arguments, so its keys must be strings; got "
                f"{bad[0]!r}; pass positional arguments as a tuple"
            )
        return (), dict(x)
    if isinstance(x, (tuple, list)):
        return tuple(x), {}
    raise EditError(
        f"{name}: expected the model's input batch as a tensor, a tuple or list of positional "
        f"arguments or a dict of keyword arguments, got {type(x).__name__}"
        + ("; pass torch.from_numpy(x)" if hasattr(x, "__array__") else "")
    )


def _check_batch_dims(
    name: str, batch_dims: Mapping[Key, int | None], keys: list[Key]
) -> None:
    unknown = [k for k in batch_dims if k not in keys]
    if unknown:
        raise EditError(
            f"batch_dims: {unknown[0]!r} is not an argument of {name} (its arguments: "
            f"{', '.join(map(repr, keys)) or 'none'}); key it by position for a tensor, tuple or "
            "list, by name for a dict"
        )
    bad = [(k, d) for k, d in batch_dims.items() if d is not None and not isinstance(d, int)]
    if bad:
        raise EditError(
            f"batch_dims: {bad[0][0]!r} maps to {bad[0][1]!r}; give the dim that holds the "
            "samples as an int, or None to pass the argument unchanged"
        )


def _given_dim(given: Mapping[Key, int | None], key: Key, default: int) -> int:
    dim = given.get(key, default)
    return default if dim is None else dim


def _dim_in(where: str, tensor: Tensor, dim: int, n: int | None, override: str) -> int:
    """``dim`` of ``tensor`` as a non-negative index, checked to exist (and to hold ``n``)."""
    if tensor.dim() == 0 or not -tensor.dim() <= dim < tensor.dim():
        raise EditError(
            f"{where}: shape {tuple(tensor.shape)} has no dim {dim} to hold the samples; pass "
            "a batch with samples along a dim" + (f", or {override}" if override else "")
        )
    dim %= tensor.dim()
    if n is not None and tensor.shape[dim] != n:
        raise EditError(
            f"{where}: shape {tuple(tensor.shape)} has size {tensor.shape[dim]} along dim {dim}, "
            f"not the {n} samples of the first tensor; pass tensors of the same batch"
        )
    return dim


def scan_inputs(
    model: nn.Module,
    x: Any,
    batch_dims: Mapping[Key, int | None] | None = None,
    *,
    name: str = "x",
    override: str = "pass batch_dims={{{key!r}: dim}} (None: pass it unchanged)",
) -> ScanInputs:
    """``x`` as the model's arguments, with the dim of every tensor that holds samples.

    Parameters
    ----------
    model : torch.nn.Module
        The model the arguments are for (a sequence-first ``nn.RNNBase`` counts samples along
        dim 1 of its input).
    x : tensor, tuple, list or dict
        ``model(x)``, ``model(*x)`` or ``model(**x)``; see the module's rule.
    batch_dims : mapping, optional
        The dim holding the samples per argument (position or name), or None to pass it
        unchanged; overrides the rule for the arguments it names.
    name : str
        How messages call ``x``.
    override : str
        How messages tell the caller to name an argument's dim (formatted with ``key``).

    Raises
    ------
    EditError
        ``x`` of another type, no tensor holding samples, a tensor whose samples are ambiguous
        or disagree with the first one, a numpy array with a dim of the batch's size (it would
        not be repeated), arguments nested deeper than one level, a ``PackedSequence``, or a
        ``batch_dims`` naming no argument.
    """
    args, kwargs = _arguments(name, x)
    single = isinstance(x, Tensor)
    arguments: list[tuple[Key, Any]] = [*enumerate(args), *kwargs.items()]
    given = dict(batch_dims or {})
    _check_batch_dims(name, given, [k for k, _ in arguments])
    found, arrays = _tensors(name, arguments, single)
    tensors = [(p, t) for p, t in found if given.get(p[0], 0) is not None]
    if not tensors:
        raise EditError(
            f"{name}: no tensor holding samples among the model's arguments "
            f"({', '.join(type(v).__name__ for _, v in arguments) or 'none'}); the scan repeats "
            "the input batch, so pass the batch as a tensor, or a tuple or dict holding it"
        )
    (first_path, first), others = tensors[0], tensors[1:]
    where = _where(name, first_path, single)
    dim = _dim_in(where, first, _given_dim(given, first_path[0], batch_dim(model)), None,
                  override.format(key=first_path[0]))
    n = int(first.shape[dim])
    dims = {first_path: dim}
    for path, tensor in others:
        where = _where(name, path, single)
        if path[0] in given:
            dims[path] = _dim_in(where, tensor, _given_dim(given, path[0], 0), n, "")
            continue
        matches = [d for d in range(tensor.dim()) if tensor.shape[d] == n]
        if len(matches) > 1:
            raise EditError(
                f"{where}: shape {tuple(tensor.shape)} has {len(matches)} dims of size {n}, the "
                f"number of samples (from {_where(name, first_path, single)}), so which one "
                f"holds them is ambiguous; {override.format(key=path[0])}"
            )
        if matches:
            dims[path] = matches[0]
    for path, array in arrays:
        if n in array.shape and given.get(path[0], 0) is not None:
            raise EditError(
                f"{_where(name, path, single)}: a {type(array).__name__} of shape {array.shape} "
                f"has the size of the batch ({n}) but only tensors are repeated per unit; pass "
                f"torch.from_numpy(...), or batch_dims={{{path[0]!r}: None}} to pass it unchanged"
            )
    return ScanInputs(args, kwargs, n, dim, first_path, dims)
