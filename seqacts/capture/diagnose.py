"""What the recording could not do cleanly, found when the dataset is built, and told once.

Non-finite states (a NaN or Inf in the input spreads through the recurrence and would look like
padding), groups whose layers' rows could not be aligned as the same samples, selected layers
that saw no call, and failures of seqacts' own bookkeeping during a forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import RecordingWarning
from .specs import LayerSpec

__all__ = ["nonfinite_steps", "report_problems"]


def nonfinite_steps(h: np.ndarray, lengths: np.ndarray, specs: Sequence[LayerSpec]) -> np.ndarray:
    """Per sample and layer, how many valid steps have a non-finite ``h`` (any direction or unit).

    ``h`` is (sample, layer, direction, time, unit), NaN-padded; ``lengths`` (sample, layer).
    A non-finite state never becomes finite again inside a recurrence (NaN and Inf propagate
    through every matrix product and gate, and a chain continues only from the bitwise state),
    so only rows whose last state (step 0 for the backward direction) is non-finite are counted
    step by step: the check costs nothing on clean data.
    """
    out = np.zeros(lengths.shape, dtype=np.int64)
    for li, spec in enumerate(specs):
        width, lens = spec.n_units, lengths[:, li]
        rows = np.nonzero(lens > 0)[0]
        bad = ~np.isfinite(h[rows, li, 0, lens[rows] - 1, :width]).all(axis=-1)
        if spec.n_directions == 2:
            bad |= ~np.isfinite(h[rows, li, 1, 0, :width]).all(axis=-1)
        for r in rows[bad]:
            values = h[r, li, : spec.n_directions, : lens[r], :width]
            out[r, li] = int((~np.isfinite(values).all(axis=(0, 2))).sum())
    return out


def report_problems(ds: xr.Dataset, notes: Sequence[str], unused: Sequence[str],
                    failures: dict[str, list[str]], stacklevel: int = 3) -> None:
    """Warn once per kind of problem, naming where it is; mark failed layers in the attrs.

    ``stacklevel`` as :func:`warnings.warn` takes it, counted from this function's caller.
    """
    if notes:
        more = f" (and {len(notes) - 1} more groups)" if len(notes) > 1 else ""
        warnings.warn(
            "seqacts: the recorded layers saw different batches within one group, so not all "
            f"their rows can be the same samples: {notes[0]}{more} (rows per chain of calls). "
            "The layers with the same rows per chain share samples; each such set got sample "
            "rows of its own, NaN in the other layers; the 'call' and 'call_row' coordinates "
            "say which call and row each sample holds",
            RecordingWarning, stacklevel=stacklevel)
    if unused:
        warnings.warn(
            f"seqacts: layer(s) {', '.join(unused)} recorded no call: the forward never ran "
            "them (e.g. cached results skipped them) or called them through TorchScript or "
            "torch.compile; their values are NaN, length 0",
            RecordingWarning, stacklevel=stacklevel)
    if failures:
        ds.attrs["failed_layers"] = " ".join(failures)
        text = "; ".join(f"{label}: {len(errs)} call(s), first error: {errs[0]}"
                         for label, errs in failures.items())
        warnings.warn(
            f"seqacts: recording failed for some calls ({text}); the model ran normally, but "
            "these calls are missing from the dataset (attr 'failed_layers'). Please report it",
            RecordingWarning, stacklevel=stacklevel)
    if "nonfinite" in ds.coords and int(ds["nonfinite"].values.max(initial=0)) > 0:
        bad = ds["nonfinite"].values
        sample, layer = np.argwhere(bad > 0)[0]
        label = str(ds["layer"].values[layer])
        n_dir, n_units = int(ds["n_directions"].values[layer]), int(ds["n_units"].values[layer])
        valid = int(ds["length"].values[sample, layer])
        h = ds["h"].values[sample, layer, :n_dir, :valid, :n_units]
        step = int(np.argmax(~np.isfinite(h).all(axis=(0, 2))))
        warnings.warn(
            f"seqacts: non-finite states (NaN/Inf) in {int((bad > 0).any(axis=1).sum())} "
            f"sample(s), first sample {int(ds['sample'].values[sample])} of layer {label} from "
            f"step {step}; check the input for NaN/Inf. The 'nonfinite' coordinate counts such "
            "steps per sample and layer; analyses leave these samples out",
            RecordingWarning, stacklevel=stacklevel)
