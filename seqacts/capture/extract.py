"""The public entry points: :func:`record` (a ``with`` block) and :func:`extract` (one call)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import xarray as xr
from torch import nn

from ..keras import is_keras_model
from ..options import RecordingOptions, split_options
from ..signatures import keywords_from
from . import explaining
from .numpy_inputs import numpy_to_tensors
from .recorder import Recorder
from .training import warn_if_random

__all__ = ["extract", "extract_with", "record"]


@keywords_from(RecordingOptions, rest=True)
def extract(model: nn.Module, *args: Any, grad: bool = False,
            gradients: Callable[[Any], Any] | None = None, **kwargs: Any) -> xr.Dataset:
    """Run ``model(*args, **kwargs)`` once and return what every recurrent layer computed.

    The forward runs under ``torch.no_grad()`` (its output is not returned), in whatever
    training mode the model is in; ``grad=True`` runs it with autograd on instead. A model in
    training mode with dropout (``nn.Dropout`` modules, or an ``nn.RNN/LSTM/GRU`` with
    ``dropout > 0``) gives a :class:`~seqacts.TrainingModeWarning`, since two calls then
    record different values. The keywords of :class:`~seqacts.options.RecordingOptions` are
    the recording's; every other keyword goes to the model.

    Parameters
    ----------
    model : torch.nn.Module
        Any module holding ``nn.RNN/LSTM/GRU`` stacks or ``RNNCell/LSTMCell/GRUCell`` loops.
    *args, **kwargs
        The model's own inputs, passed through unchanged; NumPy arrays are converted to
        tensors (floating ones to the dtype of the model's parameters, as the command line
        does; see :mod:`seqacts.capture.numpy_inputs`).
    grad : bool, default False
        Run the forward under ``torch.enable_grad()``, recording what the model computes in a
        training step (PyTorch's training kernels; on the CPU their last bits can differ from
        no-grad ones from the second layer on). The graph is discarded. With ``internals``, the
        gates of LSTM layers on the CPU are then read from the kernel's own workspace rather
        than recomputed, which costs much less (see the README's Performance section).
    gradients : callable, optional
        ``score(outputs)`` -> one value per sample, a tensor computed from the model's outputs
        with torch. Adds ``grad_h`` (and ``grad_c`` when a layer is an LSTM; NaN for the
        others), with ``h``'s dims: ``d sum(score) / d h_t``, the total derivative with respect
        to each layer's state after step t through all later steps, upper layers and the
        output (``c_t`` as passed to step t+1, ``h_t`` held). The states recorded are those of
        the model's own forward; the gradients come from a second forward run step by step
        (:mod:`seqacts.interventions.gradients`). Parameters' ``.grad`` and torch's RNG are
        left as one plain forward leaves them.
    layers : str or list of str, optional
        Labels, module paths or fnmatch patterns; default every layer (:func:`seqacts.layers`).
    internals : bool or list of str, default False
        Add per-timestep cell states and gates (``True``) or only the named variables.
    time : sequence, optional
        Labels for the ``time`` coordinate.
    modules : str or list of str, optional
        Other modules (paths or patterns) whose outputs to record too (also on a model
        without a recurrent module).
    cells : dict, optional
        Python cells to record, each called once per step as ``cell(x_t, state) -> state``:
        module path or fnmatch pattern -> ``"h"`` (the cell receives and returns a tensor
        ``h``) or ``"h,c"`` (a tuple ``(h, c)``), e.g. ``{"decoder.cell": "h,c"}``. Recorded
        from the state each call returns (kind ``cell(h)`` / ``cell(h,c)``; ``c`` as the
        internal ``c``), chained along ``time`` like any cell; see the README's "Python cells".
    chain : str, list of str or dict, optional
        Layers whose calls within one ``model(...)`` call with the same batch size are
        consecutive steps of the same rows whatever state they receive, e.g.
        ``chain={"cell": "steps"}`` (see :func:`seqacts.record`); adds ``h_in``/``c_in``.
    edits : Edit or list of Edit, optional
        Run the forward with these edits applied (:func:`seqacts.ablate`,
        :func:`seqacts.patch`, as under :func:`seqacts.intervene`): the dataset holds the
        states of the edited run.

    Returns
    -------
    xarray.Dataset
        ``h`` (sample, layer, direction, time, unit); ``h_0``, ``h_n`` and for LSTMs ``c_0``,
        ``c_n`` (sample, layer, direction, unit); internals with ``h``'s dims. A Keras 3 model
        is called as ``model(*args, training=False, **kwargs)`` and its dataset adds ``mask``
        (sample, layer, time) and the ``keras_deviation`` coordinate (README, "Keras").
    """
    options, inputs = split_options(RecordingOptions, kwargs)
    if is_keras_model(model):
        from ..keras.api import extract as keras_extract

        return keras_extract(model, options, args, inputs, grad=grad)
    warn_if_random(model)
    if gradients is not None:
        args, inputs = numpy_to_tensors(model, args, inputs)
        return explaining.with_gradients(model, options, args, inputs, grad, gradients)
    return extract_with(model, options, args, inputs, grad=grad)


def extract_with(
    model: nn.Module,
    options: RecordingOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    grad: bool = False,
) -> xr.Dataset:
    """:func:`extract` with its options as one :class:`~seqacts.options.RecordingOptions`."""
    args, kwargs = numpy_to_tensors(model, args, kwargs)
    rec = Recorder(model, options)
    with torch.set_grad_enabled(grad), rec:
        model(*args, **kwargs)
    return rec.to_dataset()


@keywords_from(RecordingOptions)
def record(model: nn.Module, *, labels: Mapping[str, Any] | None = None,
           **options: Any) -> Recorder:
    """Record every recurrent layer of ``model`` while the ``with`` block runs.

    Parameters
    ----------
    model : torch.nn.Module
        The root model; each of its forward calls inside the block appends samples, and so do
        calls made outside it (``model.loss(x)``, a submodule called directly). How calls
        become samples is the README's "How calls become samples": calls passed the state the
        previous call returned continue it along ``time``; any other call starts new samples.
    labels : dict, optional
        Labels (``{"phase": "train", "epoch": 0}``) for the ``model(...)`` calls recorded,
        each a coordinate along ``sample``; change them with :meth:`Recorder.label`. Every
        sample also carries ``model_call``, the number of the call it came from.
    layers : str or list of str, optional
        Layer labels, module paths (all layers of that module) or fnmatch patterns
        (``"encoder.*"``); default every recurrent layer (see :func:`seqacts.layers`).
    internals : bool or list of str, default False
        ``True`` adds cell states and gates per timestep; a list picks variables
        (e.g. ``["c", "forget_gate"]``).
    time : sequence, optional
        Labels for the ``time`` coordinate (e.g. a ``pandas.DatetimeIndex``).
    modules : str or list of str, optional
        Paths or patterns of other modules whose outputs to record as well (also on a model
        without a recurrent module: the dataset then holds only these outputs).
    cells : dict, optional
        Python cells to record, each called once per step as ``cell(x_t, state) -> state``:
        module path or fnmatch pattern -> ``"h"`` (the cell receives and returns a tensor
        ``h``) or ``"h,c"`` (a tuple ``(h, c)``), e.g. ``{"decoder.cell": "h,c"}``. Recorded
        from the state each call returns (kind ``cell(h)`` / ``cell(h,c)``; ``c`` as the
        internal ``c``), chained along ``time`` like any cell; see the README's "Python cells".
    chain : str, list of str or dict, optional
        Declared continuation: layers (labels, module paths or patterns, or a dict
        ``{"cell": "steps"}``) whose calls within one ``model(...)`` call with the same batch
        size are consecutive steps of the same rows, whatever state they receive (a decay,
        zoneout or a norm applied to the state between steps). The state each call received
        is recorded as ``h_in`` (and ``c_in``), dims like ``h``.
    edits : Edit or list of Edit, optional
        Edits (:func:`seqacts.ablate`, :func:`seqacts.patch`) applied to the model while the
        block runs, as :func:`seqacts.intervene` would: the recording holds the edited run.

    Returns
    -------
    Recorder
        A context manager; ``rec.to_dataset()`` returns the ``xarray.Dataset``. For a Keras 3
        model, a :class:`seqacts.keras.recorder.KerasRecorder` with the same methods.
    """
    if is_keras_model(model):
        from ..keras.api import record as keras_record

        return keras_record(model, RecordingOptions.of("record", options),  # type: ignore[return-value]
                            labels)
    return Recorder(model, RecordingOptions.of("record", options), labels=labels)
