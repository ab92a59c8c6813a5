"""The Python API's surface: names, signatures, docstrings, defaults, errors and warnings."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import seqacts
from seqacts import errors
from seqacts.analysis import compare as compare_module
from seqacts.analysis import core
from seqacts.analysis import summary as summary_module
from seqacts.analysis import windows as windows_module
from seqacts.viz import plots

README = Path(__file__).resolve().parents[1] / "README.md"
ANALYSES = {
    "compare": compare_module.compare,
    "distance": compare_module.distance,
    "final_state": compare_module.final_state,
    "roc_auc": compare_module.roc_auc,
    "dead_units": core.dead_units,
    "masked": core.masked,
    "saturation": core.saturation,
    "step_change": core.step_change,
    "summary": summary_module.summary,
    "summary_table": summary_module.summary_table,
    "match": windows_module.match,
    "top_windows": windows_module.top_windows,
}
METHODS = ["layer", "masked", "saturation", "dead_units", "step_change", "summary",
           "summary_table", "final_state", "compare", "distance", "match", "top_windows"]  # fmt: skip


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_analyses_are_functions_of_the_package(name: str) -> None:
    func = getattr(seqacts, name)
    assert isinstance(func, types.FunctionType) and func is ANALYSES[name]


@pytest.mark.parametrize("name", seqacts.__all__)
def test_every_public_name_is_importable_and_in_the_readme(name: str) -> None:
    assert getattr(seqacts, name) is not None
    text = README.read_text()
    assert f"`{name}`" in text or f"seqacts.{name}" in text, f"{name} is not documented"


def test_import_loads_neither_torch_nor_matplotlib() -> None:
    code = "import sys, seqacts; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def _without_ds(func) -> inspect.Signature:
    sig = inspect.signature(func)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


@pytest.mark.parametrize("name", METHODS)
def test_accessor_methods_have_the_functions_signature_and_docstring(name: str) -> None:
    method = getattr(xr.Dataset().seqacts, name)
    func = getattr(core, name, None) or getattr(seqacts, name)
    assert inspect.signature(method) == _without_ds(func)
    assert method.__doc__ == func.__doc__ and len(method.__doc__.splitlines()) > 3


@pytest.mark.parametrize("name", ["heatmap", "traces", "saturation", "compare", "distance"])
def test_plot_methods_show_their_real_parameters(name: str) -> None:
    method = getattr(xr.Dataset().seqacts.plot, name)
    sig = inspect.signature(method)
    assert sig == _without_ds(getattr(plots, name))
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    assert method.__doc__ == getattr(plots, name).__doc__


def _entry_points() -> list[tuple[object, type, list[str]]]:
    """Each recording entry point, the options class it takes, and its own parameters."""
    from seqacts.options import Options, RecordingOptions, StorageOptions

    return [
        (seqacts.record, RecordingOptions, ["model", "labels"]),
        (seqacts.extract, RecordingOptions, ["model", "args", "grad", "gradients"]),
        (seqacts.extract_to_netcdf, Options,
         ["model", "batches", "path", "overwrite", "resume", "progress"]),
        (seqacts.extract_distributed, Options,
         ["model", "load", "n_samples", "directory", "client", "shard_size", "overwrite",
          "resume", "progress"]),
        (seqacts.write_stream, StorageOptions, ["datasets", "path", "overwrite"]),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(5))
def test_entry_points_take_their_keywords_from_the_options_classes(index: int) -> None:
    func, options, own = _entry_points()[index]
    params = inspect.signature(func).parameters  # type: ignore[arg-type]
    declared = inspect.signature(options).parameters
    shown = [n for n in params if n not in own and params[n].kind is not params[n].VAR_KEYWORD]
    assert list(params)[: len(own)] == own
    assert shown == list(declared)
    for name in shown:  # same kind, default and annotation: declared once, in options.py
        assert params[name] == declared[name]
        assert re.search(rf"\b{name}\b", func.__doc__), f"{func.__name__}: {name} undocumented"
    var = [p for p in params.values() if p.kind is p.VAR_KEYWORD]
    assert [p.name for p in var] == (["kwargs"] if func is seqacts.extract else [])
    assert all(declared[n].kind is inspect.Parameter.KEYWORD_ONLY for n in declared)


def test_the_option_classes_split_the_streaming_options() -> None:
    from seqacts.options import Options, RecordingOptions, StorageOptions, option_names

    assert option_names(Options) == (option_names(RecordingOptions)
                                     | option_names(StorageOptions) | {"inputs"})  # fmt: skip
    assert not option_names(RecordingOptions) & option_names(StorageOptions)


def test_there_is_one_public_extract() -> None:
    from seqacts.capture import extract as capture_extract

    assert seqacts.extract is capture_extract.extract
    defined = [m for m in ("seqacts.interventions", "seqacts.interventions.context", "seqacts.io")
               if hasattr(importlib.import_module(m), "extract")]  # fmt: skip
    assert defined == []
    params = inspect.signature(seqacts.extract).parameters
    assert params["edits"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["edits"].default is None


def test_saturation_thresholds_are_declared_once() -> None:
    def defaults(func) -> tuple:
        params = inspect.signature(func).parameters
        return params["low"].default, params["high"].default

    expected = (core.LOW, core.HIGH)
    for func in (core.saturation, seqacts.summary, seqacts.summary_table, plots.saturation,
                 xr.Dataset().seqacts.saturation, xr.Dataset().seqacts.plot.saturation):  # fmt: skip
        assert defaults(func) == expected
    assert inspect.signature(seqacts.summary).parameters["tol"].default == core.TOL


def test_masked_and_final_state_are_documented() -> None:
    for func in (seqacts.masked, seqacts.final_state):
        assert "Parameters" in func.__doc__ and "Returns" in func.__doc__


@pytest.mark.parametrize("dropout", ["module", "rnn"])
def test_extract_warns_about_dropout_in_training_mode(dropout: str) -> None:
    torch.manual_seed(0)
    if dropout == "rnn":
        model: torch.nn.Module = torch.nn.GRU(3, 4, num_layers=2, dropout=0.5, batch_first=True)
    else:
        model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.GRU(3, 4, batch_first=True))
    x = torch.randn(2, 5, 3)
    with pytest.warns(seqacts.TrainingModeWarning, match="model.eval()"):
        seqacts.extract(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seqacts.extract(model.eval(), x)  # eval mode: no warning
        seqacts.extract(torch.nn.GRU(3, 4, batch_first=True).train(), x)  # no dropout


def test_exception_classes_live_in_errors_and_keep_their_builtin_bases() -> None:
    from seqacts.analysis.core import MissingVariableError
    from seqacts.capture.unroll import UnrollError
    from seqacts.cli import CLIError

    assert CLIError is errors.CLIError and UnrollError is errors.UnrollError
    assert MissingVariableError is errors.MissingVariableError
    for name in errors.__all__:
        cls = getattr(errors, name)
        if issubclass(cls, Warning):
            continue
        assert issubclass(cls, errors.SeqactsError)
        assert cls is errors.SeqactsError or len(cls.__mro__) > 3  # a builtin base besides
    assert issubclass(errors.OutputExistsError, FileExistsError)
    assert issubclass(errors.DatasetNotFoundError, FileNotFoundError)
    assert issubclass(errors.ArgumentTypeError, TypeError)


def _small() -> xr.Dataset:
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 4, batch_first=True)
    ds = seqacts.extract(model, torch.randn(6, 5, 3), internals=True)
    return ds.assign_coords(is_anomaly=("sample", np.arange(6) % 2 == 0))


def _mistakes(tmp: Path) -> list[tuple[str, object, type[Exception]]]:
    ds = _small()
    model = torch.nn.LSTM(3, 4, batch_first=True)
    other = seqacts.extract(torch.nn.LSTM(3, 7, batch_first=True), torch.randn(4, 5, 3))
    (tmp / "exists.nc").write_bytes(b"x")
    (tmp / "empty").mkdir(exist_ok=True)
    x = [torch.randn(2, 5, 3)]
    return [
        ("saturation low > high", lambda: seqacts.saturation(ds, low=0.9, high=0.1), ValueError),
        ("compare: labels of wrong length", lambda: seqacts.compare(ds, [True, False]), ValueError),
        ("compare: one group", lambda: seqacts.compare(ds, [True] * 6), ValueError),
        ("compare: unknown baseline", lambda: seqacts.compare(ds, "is_anomaly", baseline=3),
         ValueError),
        ("compare: group along time", lambda: seqacts.compare(ds, ds["h"]), ValueError),
        ("compare: unknown feature", lambda: seqacts.compare(ds, "is_anomaly", feature="median"),
         ValueError),
        ("compare: missing group", lambda: seqacts.compare(ds, "nope"), ValueError),
        ("distance: other model", lambda: seqacts.distance(ds, other), ValueError),
        ("distance: numeric mask", lambda: seqacts.distance(ds, np.arange(6)), TypeError),
        ("distance: one reference", lambda: seqacts.distance(ds, np.arange(6) == 0), ValueError),
        ("dead_units: no h", lambda: seqacts.dead_units(ds.drop_vars("h")), ValueError),
        ("extract: not a module", lambda: seqacts.extract(ds, x[0]), TypeError),
        ("extract: names not str", lambda: seqacts.extract(model, x[0], layers=[0]), TypeError),
        ("extract: unknown layer", lambda: seqacts.extract(model, x[0], layers="l9"), ValueError),
        ("stream: bad compression", lambda: seqacts.extract_to_netcdf(
            model, x, tmp / "a.nc", compression="lz4", progress=False), ValueError),
        ("stream: bad pack", lambda: seqacts.extract_to_netcdf(
            model, x, tmp / "a.nc", pack="int8", progress=False), ValueError),
        ("stream: overwrite and resume", lambda: seqacts.extract_to_netcdf(
            model, x, tmp / "a.nc", overwrite=True, resume=True, progress=False), ValueError),
        ("stream: file exists", lambda: seqacts.extract_to_netcdf(
            model, x, tmp / "exists.nc", progress=False), FileExistsError),
        ("stream: no batch", lambda: seqacts.extract_to_netcdf(
            model, [], tmp / "b.nc", progress=False), ValueError),
        ("open_dataset: no shards", lambda: seqacts.open_dataset(tmp / "empty"),
         FileNotFoundError),
        ("open_dataset: no file", lambda: seqacts.open_dataset(tmp / "gone.nc"),
         FileNotFoundError),
        ("report: out_dir is a file", lambda: seqacts.report(ds, tmp / "exists.nc"),
         FileExistsError),
        ("plot: panel not along time", lambda: plots.heatmap(ds, 0, "l0", panel="h_n"),
         ValueError),
    ]  # fmt: skip


def test_api_mistakes_raise_seqacts_errors(tmp_path: Path) -> None:
    for what, call, builtin in _mistakes(tmp_path):
        with pytest.raises(seqacts.SeqactsError) as info:
            call()  # type: ignore[operator]
        assert isinstance(info.value, builtin), what
        assert len(str(info.value)) > 20, what
    assert not (tmp_path / "a.nc").exists() and (tmp_path / "exists.nc").read_bytes() == b"x"
