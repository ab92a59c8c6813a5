"""``seqacts extract model.keras ...``: the command line's path for a saved Keras 3 model.

The checks before any work and the input reading are ``seqacts extract``'s own (:mod:`seqacts.cli`);
here the model is loaded with ``safe_mode=True`` (:mod:`seqacts.keras.loading`), each batch is
recorded with :func:`seqacts.extract` and the datasets are streamed to the file by
:func:`seqacts.write_stream` (same layout, options and two-step commit as for PyTorch).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CLIError
from .inputs import existing_file

__all__ = ["check_keras_args", "extract_keras"]


def check_keras_args(args: argparse.Namespace) -> None:
    """What does not apply to a ``.keras`` file, told before anything is read."""
    existing_file(args.model, "MODEL")
    if args.weights is not None:
        raise CLIError("--weights: a .keras file holds its own weights; drop --weights")
    if getattr(args, "resume", False):
        raise CLIError("--resume: not supported for .keras models yet; rerun with --overwrite")
    if not args.batch_first:
        raise CLIError("--time-first: a Keras model takes (sample, time, feature); drop "
                       "--time-first and describe the file's axes with --layout if needed")


def _datasets(model: Any, x: np.ndarray, args: argparse.Namespace,
              time: Any) -> Iterator[Any]:
    import seqacts

    kwargs = {"time": time} if time is not None else {}
    for start in range(0, x.shape[0], args.batch_size):
        yield seqacts.extract(model, x[start : start + args.batch_size], layers=args.layers,
                              internals=args.internals, **kwargs)


def extract_keras(args: argparse.Namespace, out: Path, data: Any,
                  coords: Mapping[str, np.ndarray]) -> int:
    """Load ``args.model`` (a ``.keras`` file), record ``data`` in batches into ``out``."""
    import seqacts

    from .io.labels import add_sample_coords
    from .keras.loading import load_keras_model

    model = load_keras_model(Path(args.model))
    x = data.array.astype(np.float32) if data.array.dtype.kind == "f" else data.array
    out.parent.mkdir(parents=True, exist_ok=True)
    seqacts.write_stream(_datasets(model, x, args, data.time), out, compression=args.compression,
                         pack=args.pack, overwrite=True)
    if coords:
        add_sample_coords(out, coords)
    labels = f"; labels along sample: {', '.join(coords)}" if coords else ""
    print(f"wrote {out}: {data.n_samples} samples, {out.stat().st_size / 1e6:.1f} MB{labels}")
    return 0
