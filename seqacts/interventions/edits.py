"""What an edit is: which layer, direction, state, units and steps, and the values written.

:func:`ablate` and :func:`patch` build :class:`Edit` objects that know nothing of a model.
:func:`plan` checks one against a model's layer and turns it into a :class:`Plan`: boolean
masks and value tensors that the runner applies to a kernel's state at a step. The ablation
scan builds plans directly (one unit per block of repeated samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ..capture.specs import LayerSpec
from ..errors import EditError
from ..kinds import has_cell_state
from ..schema import DIRECTIONS
from .reference_values import check_value, draw_rows, from_reference

__all__ = ["STATES", "Edit", "Plan", "ablate", "patch", "plan", "step_flags", "take_rows", "time_mask"]

#: What an edit may replace: the hidden state (the layer's output) or an LSTM's cell state.
STATES: tuple[str, ...] = ("h", "c")

TimeSpec = Any  # None | int | slice | bool array (time,) or (sample, time)


@dataclass(frozen=True)
class Edit:
    """One intervention on a layer's recurrence; build it with :func:`ablate` or :func:`patch`."""

    layer: str
    units: tuple[int, ...] | None  # None: every unit of the layer
    state: str
    direction: str
    time: TimeSpec
    value: Any = 0.0  # ablate: float or tensor broadcast over (sample, units)
    source: Any = None  # patch: xr.Dataset or tensor (sample, time, unit)
    reference: Any = None  # ablate(value="mean" | "resample"): the dataset the values come from
    per_step: bool = False  # value="mean": one mean per step rather than over all steps
    seed: int = 0  # value="resample": the draw of reference samples

    @property
    def is_patch(self) -> bool:
        return self.source is not None


def _check_time(time: TimeSpec) -> None:
    if time is None or isinstance(time, (int, np.integer, slice)) and not isinstance(time, bool):
        return
    values = time.values if isinstance(time, xr.DataArray) else time
    arr = np.asarray(values.cpu() if isinstance(values, Tensor) else values)
    if arr.dtype != bool or arr.ndim not in (1, 2):
        raise EditError(
            "time: expected None (all steps), an int, a slice, or a boolean mask over steps "
            f"(time,) or (sample, time); got {type(time).__name__}"
            + (f" of {arr.dtype} with shape {arr.shape}" if arr.ndim else "")
        )


def _units(units: int | Any | None, option: str) -> tuple[int, ...] | None:
    if units is None:
        return None
    if isinstance(units, (int, np.integer)):
        return (int(units),)
    out = tuple(int(u) for u in np.asarray(units).reshape(-1))
    if not out:
        raise EditError(f"{option}: empty list of units; pass at least one unit index")
    return out


def _edit(layer: str, units: int | Any | None, state: str, time: TimeSpec, direction: str, *,
          value: float | Any = 0.0, source: Any = None) -> Edit:
    """An :class:`Edit`, its state, direction, steps and units checked."""
    if state not in STATES:
        raise EditError(
            f"state: expected 'h' (hidden state) or 'c' (LSTM cell state), got {state!r}"
        )
    if direction not in DIRECTIONS:
        raise EditError(f"direction: expected 'forward' or 'backward', got {direction!r}")
    _check_time(time)
    return Edit(layer=str(layer), units=_units(units, "units"), state=state,
                direction=direction, time=time, value=value, source=source)  # fmt: skip


def ablate(
    layer: str,
    units: int | Any,
    *,
    state: str = "h",
    value: float | str | Any = 0.0,
    time: TimeSpec = None,
    direction: str = "forward",
    reference: xr.Dataset | None = None,
    per_step: bool = False,
    seed: int = 0,
) -> Edit:
    """Set units of a layer's state to a fixed value inside the recurrence.

    Parameters
    ----------
    layer : str
        A label as listed by :func:`seqacts.layers` (``"encoder.l1"``, a cell's module path).
    units : int or list of int
        The units to set.
    state : {"h", "c"}, default "h"
        ``"h"`` replaces ``h_t`` after step t: what step t+1 of the layer receives, what the
        next layer receives at t and what the layer returns (sequence and final state).
        ``"c"`` (LSTM) replaces ``c_t`` and recomputes ``h_t = o_t * tanh(c_t)`` (projected
        when ``proj_size > 0``).
    value : float, tensor, "mean" or "resample", default 0.0
        The value written; a tensor broadcasts over ``(sample, units)``. ``"mean"``, each
        unit's mean over ``reference``'s valid steps, and ``"resample"``, its values in a
        reference sample drawn per sample: see :mod:`seqacts.interventions.reference_values`.
    time : None, int, slice or boolean array, optional
        The edited steps: all (None), one step, a slice, or a mask over steps ``(time,)`` or
        per sample ``(sample, time)``. For cells, steps count the cell's calls in one forward.
    direction : {"forward", "backward"}, default "forward"
        The direction of a bidirectional layer to edit.
    reference : xarray.Dataset, optional
        For ``value="mean"`` / ``"resample"``: a recording of the same model (``c`` needs
        ``internals=["c"]``); select known-normal samples with ``ds.isel(sample=mask)``.
    per_step : bool, default False
        ``value="mean"``: the mean at each step over the reference's samples valid there.
    seed : int, default 0
        ``value="resample"``: which reference samples are drawn.

    Returns
    -------
    Edit
        Pass it to :func:`seqacts.intervene`, :func:`seqacts.extract` (``edits=``).
    """
    check_value(value, reference, per_step)
    edit = _edit(layer, units, state, time, direction, value=value)
    return replace(edit, reference=reference, per_step=bool(per_step), seed=int(seed))


def patch(
    layer: str,
    source: xr.Dataset | Tensor | np.ndarray,
    *,
    units: int | Any | None = None,
    state: str = "h",
    time: TimeSpec = None,
    direction: str = "forward",
) -> Edit:
    """Replace units of a layer's state with the values they had in another run.

    Parameters
    ----------
    layer : str
        A label as listed by :func:`seqacts.layers`.
    source : xarray.Dataset or tensor
        A dataset recorded from the same model (``h``; ``c`` for ``state="c"``, recorded with
        ``internals=["c"]``) with as many samples as the edited run or one (broadcast), or a
        tensor ``(sample, time, unit)`` over all of the layer's units.
    units : int or list of int, optional
        The units to replace; default all.
    state, time, direction
        As in :func:`ablate`.

    Returns
    -------
    Edit
    """
    if not isinstance(source, (xr.Dataset, Tensor, np.ndarray)):
        raise EditError(
            f"patch: source must be an xarray.Dataset recorded from the same model or a tensor "
            f"(sample, time, unit); got {type(source).__name__}"
        )
    return _edit(layer, units, state, time, direction, source=source)


@dataclass
class Plan:
    """An edit resolved against one layer: masks and values in the layer's own width.

    ``unit_mask`` is ``(S, W)`` (``S`` = 1 or the number of samples); ``values`` is ``(S, W)``
    for a constant, ``(S, T, W)`` for a patch (``per_step``); ``time`` is the edit's steps.
    """

    label: str
    direction: int
    state: str
    unit_mask: Tensor
    values: Tensor
    per_step: bool
    time: TimeSpec = None
    #: ``value="resample"``: the reference rows ``(R, T, W)`` each run's samples are drawn from
    pool: Tensor | None = None
    seed: int = 0
    _converted: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def step_mask(self, steps: int) -> Tensor:
        """Which steps are edited, ``(S, steps)`` bool (S = 1 or one row per sample)."""
        return time_mask(self.time, steps, self.label)

    def check_samples(self, n: int, steps: Tensor | None = None) -> None:
        """Raise unless every per-sample part of the plan has one row or ``n`` rows.

        A resampling plan first draws its ``n`` rows from the reference pool.
        """
        if self.pool is not None and self.values.shape[0] != n:
            self.values = draw_rows(self.pool, n, self.seed)
            self._converted.clear()
        parts = {"values" if not self.per_step else "the patch source": self.values,
                 "units": self.unit_mask}  # fmt: skip
        if steps is not None:
            parts["time"] = steps
        for name, t in parts.items():
            if t.shape[0] not in (1, n):
                raise EditError(
                    f"edit on {self.label}: {name} for {t.shape[0]} samples, but the model ran "
                    f"{n}; pass one per sample or a single one to broadcast"
                )

    def at(self, t: int, rows: Tensor | None, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """The mask ``(n, W)`` and values ``(n, W)`` at step ``t`` for kernel rows ``rows``.

        ``rows`` maps the kernel's first ``n`` rows to sample indices (None: identity).
        """
        key = (like.device, like.dtype)
        if key not in self._converted:  # once per run, not per edited step
            self._converted[key] = (self.unit_mask.to(like.device),
                                    self.values.to(like.device, like.dtype))  # fmt: skip
        mask, vals = self._converted[key]
        if self.per_step:
            if t >= vals.shape[1]:
                raise EditError(
                    f"patch {self.label}: the source has {vals.shape[1]} steps, the run "
                    f"reached step {t}; record the source with inputs as long as the edited run"
                )
            vals = vals[:, t]
        return take_rows(mask, rows, n, self.label), take_rows(vals, rows, n, self.label)


def take_rows(t: Tensor, rows: Tensor | None, n: int, label: str) -> Tensor:
    """Rows of ``t`` (one per sample, or one to broadcast) for ``n`` kernel rows.

    ``rows`` maps kernel rows to samples (a PackedSequence's sorted order); None: identity.
    """
    if t.shape[0] == 1:
        return t.expand(n, *t.shape[1:])
    if rows is not None:
        return t.index_select(0, rows.to(t.device))
    if t.shape[0] < n:
        raise EditError(
            f"edit on {label}: values or masks for {t.shape[0]} samples, the run has {n}; "
            "pass one row per sample or a single row to broadcast"
        )
    return t[:n]


def time_mask(time: TimeSpec, steps: int, label: str) -> Tensor:
    """Resolve ``time=`` for a run of ``steps`` steps into a ``(S, steps)`` boolean mask."""
    if time is None:
        return torch.ones(1, steps, dtype=torch.bool)
    if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        t = int(time)
        if not -steps <= t < steps:
            raise EditError(f"time: step {t} is out of range for {label}, which ran {steps} steps")
        mask = torch.zeros(1, steps, dtype=torch.bool)
        mask[0, t] = True
        return mask
    if isinstance(time, slice):
        picked = np.zeros(steps, dtype=bool)
        picked[time] = True  # numpy slicing: negative bounds and steps as in Python
        return torch.from_numpy(picked).unsqueeze(0)
    arr = time.values if isinstance(time, xr.DataArray) else time
    arr = torch.as_tensor(np.asarray(arr.cpu() if isinstance(arr, Tensor) else arr))
    if arr.dtype != torch.bool:
        raise EditError(
            f"time: expected None, an int, a slice or a boolean mask, got an array of {arr.dtype}"
        )
    if arr.dim() == 1:
        arr = arr.unsqueeze(0)
    if arr.dim() != 2 or arr.shape[1] != steps:
        raise EditError(
            f"time: a mask of shape {tuple(arr.shape)} for {label}, which ran {steps} steps; "
            f"expected ({steps},) or (sample, {steps})"
        )
    return arr


def step_flags(time: TimeSpec, t: int, label: str) -> Tensor:
    """Whether call ``t`` of a cell (counted from 0 in one forward) is edited, ``(S,)`` bool."""
    if time is None:
        return torch.ones(1, dtype=torch.bool)
    if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        if time < 0:
            raise EditError(
                f"time: step {int(time)} on the cell {label}: a cell loop's length is not known "
                "in advance; count its calls from 0"
            )
        return torch.tensor([t == int(time)])
    if isinstance(time, slice):
        if any(v is not None and v < 0 for v in (time.start, time.stop)):
            raise EditError(
                f"time: {time} on the cell {label}: a cell loop's length is not known in "
                "advance; use non-negative bounds"
            )
        return torch.tensor([t in range(*time.indices(t + 1))])
    mask = time_mask(time, _mask_steps(time), label)
    if t >= mask.shape[1]:
        return torch.zeros(mask.shape[0], dtype=torch.bool)
    return mask[:, t]


def _mask_steps(time: Any) -> int:
    return int(np.shape(time.values if isinstance(time, xr.DataArray) else time)[-1])


def _values_over_units(value: Any, units: tuple[int, ...], width: int) -> Tensor:
    v = torch.as_tensor(value.detach().cpu() if isinstance(value, Tensor) else value,
                        dtype=torch.float64)  # fmt: skip
    if v.dim() <= 1:
        v = v.reshape(1, -1)
    if v.dim() != 2 or v.shape[1] not in (1, len(units)):
        raise EditError(
            f"value: expected a float or a tensor broadcast over (sample, {len(units)} units), "
            f"got shape {tuple(v.shape)}"
        )
    full = torch.zeros(v.shape[0], width, dtype=torch.float64)
    full[:, list(units)] = v.expand(v.shape[0], len(units))
    return full


def _source_values(edit: Edit, spec: LayerSpec, width: int) -> Tensor:
    src = edit.source
    if isinstance(src, xr.Dataset):
        if edit.state not in src:
            hint = " (record it with internals=['c'])" if edit.state == "c" else ""
            raise EditError(f"patch: the source dataset has no variable {edit.state!r}{hint}")
        if spec.label not in src["layer"].values:
            raise EditError(
                f"patch: the source dataset has no layer {spec.label!r}; it holds "
                f"{', '.join(map(str, src['layer'].values))}"
            )
        var = src[edit.state].sel(layer=spec.label, direction=edit.direction)
        arr = var.transpose("sample", "time", "unit").values
        return torch.from_numpy(np.ascontiguousarray(arr[:, :, :width], dtype=np.float64))
    arr_t = torch.as_tensor(src.detach().cpu() if isinstance(src, Tensor) else src)
    if arr_t.dim() == 2:
        arr_t = arr_t.unsqueeze(0)
    if arr_t.dim() != 3 or arr_t.shape[2] != width:
        raise EditError(
            f"patch: a source tensor for {spec.label} must be (sample, time, {width}) over all "
            f"of the layer's units; got shape {tuple(arr_t.shape)}"
        )
    return arr_t.to(torch.float64)


def plan(edit: Edit, spec: LayerSpec) -> Plan:
    """Check ``edit`` against the layer it names and resolve it into a :class:`Plan`."""
    if spec.hooked:
        raise EditError(
            f"{spec.label} is a Python cell ({spec.kind}), recorded from the state it returns: "
            "seqacts edits states inside torch's recurrent kernels only; edit the cell's own "
            "code, or its input or output")
    lstm = has_cell_state(spec.kind)
    if edit.state == "c" and not lstm:
        raise EditError(
            f"state='c': {spec.label} is a {spec.kind} layer, which has no cell state; "
            "use state='h'"
        )
    d = DIRECTIONS.index(edit.direction)
    if d >= spec.n_directions:
        raise EditError(
            f"direction='backward': {spec.label} is unidirectional; use direction='forward'"
        )
    width = spec.n_cell_units if edit.state == "c" else spec.n_units
    units = edit.units if edit.units is not None else tuple(range(width))
    bad = [u for u in units if not 0 <= u < width]
    if bad:
        raise EditError(
            f"units: {bad} out of range for {spec.label}, whose {edit.state!r} has {width} "
            f"units (0..{width - 1})"
        )
    mask = torch.zeros(1, width, dtype=torch.bool)
    mask[0, list(units)] = True
    pool = None
    if edit.is_patch:
        values, per_step = _source_values(edit, spec, width), True
    elif isinstance(edit.value, str):
        values, pool = from_reference(edit, spec.label, width)
        per_step = values.dim() == 3
    else:
        values, per_step = _values_over_units(edit.value, units, width), False
    return Plan(label=spec.label, direction=d, state=edit.state, unit_mask=mask,
                values=values, per_step=per_step, time=edit.time, pool=pool,
                seed=edit.seed)  # fmt: skip
