"""The ``seqacts`` command line: ``demo``, ``extract``, ``info`` and ``report``.

Mistakes a user can fix (a missing file, a bad ``MODEL`` string, weights or input that do not fit
the model) print one line naming the problem and the fix and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import SeqactsError, StreamBusyError

__all__ = ["CLIError", "main"]

MODEL_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
STATE_KEYS = ("state_dict", "model_state_dict", "model")


class CLIError(SeqactsError, ValueError):
    """A problem with the command line's arguments or files, with the fix in its message."""


def _file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what}: no such file {path!r}; check the path")
    return p


def load_factory(spec: str) -> Callable[[], Any]:
    """Resolve ``package.module:factory`` (the current directory is importable)."""
    if not MODEL_RE.match(spec):
        raise CLIError(
            f"MODEL: expected 'package.module:factory' (e.g. seqacts.demo:build_model), got {spec!r}"
        )
    module_name, attr = spec.split(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise CLIError(
            f"MODEL: cannot import {module_name!r} ({err}); run from the directory that holds "
            "it or install its package"
        ) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"MODEL: {module_name!r} has no attribute {attr!r}; check the name")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CLIError(f"MODEL: {spec} is not callable; point it at a function returning the model")
    return obj


def build_model(spec: str, weights: str | None) -> Any:
    """Call the factory, load ``weights`` (``weights_only=True``) and switch to eval mode."""
    import torch
    from torch import nn

    model = load_factory(spec)()
    if not isinstance(model, nn.Module):
        raise CLIError(f"MODEL: {spec}() returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        path = _file(weights, "--weights")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CLIError(
                f"--weights: cannot load {weights} with weights_only=True ({type(err).__name__}); "
                "save the weights with torch.save(model.state_dict(), path)"
            ) from err
        load_weights(model, state, weights)
    return model.eval()


def load_weights(model: Any, state: Any, name: str) -> None:
    """``model.load_state_dict(state)`` with a one-line account of what does not fit."""
    if isinstance(state, Mapping):
        for key in STATE_KEYS:
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise CLIError(f"--weights: {name} holds a {type(state).__name__}, not a state_dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    fits = {
        k: tuple(getattr(state.get(k), "shape", v.shape)) == tuple(v.shape) for k, v in own.items()
    }
    shapes = [f"{k} (checkpoint {list(state[k].shape)}, model {list(own[k].shape)})"
              for k in own if not fits[k]]  # fmt: skip
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CLIError(
            f"--weights: {name} does not fit the model ({'; '.join(problems)}); use the factory "
            "that built the model these weights were saved from"
        )
    model.load_state_dict(state)


def load_input(path: str, variable: str | None, batch_first: bool) -> tuple[Any, Any]:
    """Read ``.npy``, ``.pt`` or ``.nc`` input; return (tensor, time labels or None)."""
    import numpy as np
    import torch

    p = _file(path, "--input")
    time = None
    suffix = p.suffix.lower()
    if suffix == ".npy":
        data: Any = np.load(p, allow_pickle=False)
    elif suffix == ".pt":
        data = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(data, Mapping):
            tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
            key = variable or ("input" if "input" in tensors else None)
            if key is None and len(tensors) == 1:
                key = next(iter(tensors))
            if key not in tensors:
                raise CLIError(
                    f"--input: pick one of the tensors {sorted(tensors)} with --variable"
                )
            data = tensors[key]
    elif suffix == ".nc":
        data, time = _netcdf_input(p, variable, batch_first)
    else:
        raise CLIError(f"--input: expected a .npy, .pt or .nc file, got {p.name!r}")
    tensor = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    if tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.dim() < 2:
        raise CLIError(
            f"--input: expected an array (sample, time, feature), got shape {tuple(tensor.shape)}"
        )
    return tensor, time


def _netcdf_input(p: Path, variable: str | None, batch_first: bool) -> tuple[Any, Any]:
    import xarray as xr

    with xr.open_dataset(p) as ds:
        names = [str(v) for v in ds.data_vars]
        name = variable or ("input" if "input" in names else names[0] if len(names) == 1 else None)
        if name not in names:
            raise CLIError(f"--input: pick one of the variables {names} with --variable")
        da = ds[name].load()
    if {"sample", "time"} <= set(da.dims):
        order = ("sample", "time") if batch_first else ("time", "sample")
        da = da.transpose(*order, ...)
        time = da["time"].values if "time" in da.coords else None
        return da.values, time
    return da.values, None


def check_input(model: Any, x: Any, batch_first: bool) -> None:
    """Catch the common shape mistakes before running anything, with the fix in the message."""
    from torch import nn

    layout = "(sample, time, feature)" if batch_first else "(time, sample, feature)"
    first = next((m for m in model.modules() if next(m.parameters(False), None) is not None), None)
    if isinstance(first, (nn.RNNBase, nn.RNNCellBase)) and x.is_floating_point():
        if x.dim() != 3:
            raise CLIError(
                f"--input: expected a 3-D array {layout}, got shape {tuple(x.shape)}; "
                "add a sample axis (x[None]) for a single sequence"
            )
        own = getattr(first, "batch_first", batch_first)
        if isinstance(first, nn.RNNBase) and own != batch_first:
            flag = "--batch-first" if own else "--time-first"
            raise CLIError(
                f"--input: the model's first recurrent layer has batch_first={own}, so it reads "
                f"its input as {'(sample, time, feature)' if own else '(time, sample, feature)'}; "
                f"pass {flag} (and lay the data out that way)"
            )
        if x.shape[-1] != first.input_size:
            raise CLIError(
                f"--input: {x.shape[-1]} features per step but the model's first recurrent layer "
                f"expects input_size={first.input_size}; input shape {tuple(x.shape)} read as "
                f"{layout} (use --time-first/--batch-first to change)"
            )


def batches(x: Any, size: int, batch_first: bool) -> Iterator[Any]:
    """Split ``x`` along its sample axis into chunks of ``size`` samples."""
    yield from x.split(size, dim=0 if batch_first else 1)


def _optional(name: str, module: str) -> Any:
    """``seqacts.<name>``, else ``seqacts.<module>.<name>``, else None (not yet available)."""
    import seqacts

    found = getattr(seqacts, name, None)
    if found is None:
        try:
            found = getattr(importlib.import_module(f"seqacts.{module}"), name, None)
        except ImportError:
            return None
    return found


def cmd_extract(args: argparse.Namespace) -> int:
    import torch

    import seqacts

    if args.batch_size < 1:
        raise CLIError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CLIError(f"--out: {out} exists; pass --overwrite to replace it")
    model = build_model(args.model, args.weights)
    x, time = load_input(args.input, args.variable, args.batch_first)
    check_input(model, x, args.batch_first)
    n = x.shape[0 if args.batch_first else 1]
    progress = sys.stderr.isatty()
    chunks = list(batches(x, args.batch_size, args.batch_first))
    writer = _optional("extract_to_netcdf", "stream")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if writer is not None and (time is None or "time" in inspect.signature(writer).parameters):
            kwargs: dict[str, Any] = {"time": time} if time is not None else {}
            writer(model, chunks, out, layers=args.layers, internals=args.internals,
                   overwrite=True, progress=progress, **kwargs)  # fmt: skip
        else:
            from tqdm.auto import tqdm

            with (
                torch.no_grad(),
                seqacts.record(
                    model, layers=args.layers, internals=args.internals, time=time
                ) as rec,
            ):
                for chunk in tqdm(chunks, disable=not progress, unit="batch"):
                    model(chunk)
            rec.to_dataset().to_netcdf(out)
    except RuntimeError as err:
        if isinstance(err, SeqactsError):
            raise
        raise CLIError(
            f"--input: the model rejected a batch of shape {tuple(chunks[0].shape)} "
            f"({str(err).splitlines()[0]}); check the input's layout (--batch-first/--time-first)"
        ) from err
    print(f"wrote {out}: {n} samples, {out.stat().st_size / 1e6:.1f} MB")
    return 0


def open_acts(path: str) -> Any:
    """Open a seqacts netCDF file lazily (via ``seqacts.open_dataset`` when it exists)."""
    import xarray as xr

    p = _file(path, "FILE")
    opener = _optional("open_dataset", "scale")
    try:
        ds = opener(p) if opener is not None else xr.open_dataset(p, chunks={})
    except (OSError, ValueError) as err:  # also truncated or broken files: said in the message
        if isinstance(err, SeqactsError) and not isinstance(err, OSError):
            raise
        if isinstance(err, StreamBusyError):
            raise
        raise CLIError(f"FILE: cannot read {path} as netCDF ({err}); pass a .nc file") from err
    if "layer" not in ds.dims or "h" not in ds:
        raise CLIError(f"FILE: {path} is not a seqacts dataset (no 'layer' dimension or 'h'); "
                       "create one with `seqacts extract` or seqacts.extract(...).to_netcdf()")  # fmt: skip
    return ds


def cmd_info(args: argparse.Namespace) -> int:
    from .analysis.summary import format_table, summary_table

    if args.verify:
        from .io.integrity import verify

        report = verify(_file(args.file, "FILE"))
        print(report)
        return 0 if report.ok else 1
    ds = open_acts(args.file)
    size = Path(args.file).stat().st_size
    print(f"{args.file}: {size / 1e6:.1f} MB on disk, {ds.nbytes / 1e6:.1f} MB in memory")
    print("dims: " + ", ".join(f"{k} {v}" for k, v in ds.sizes.items()))
    rows = [
        [str(name), str(ds["kind"].values[i]), int(ds["n_units"][i]), int(ds["n_cell_units"][i]),
         int(ds["n_directions"][i]), int(ds["length"].isel(layer=i).max())]
        for i, name in enumerate(ds["layer"].values)
    ]  # fmt: skip
    print("\nlayers:")
    print(format_table(["layer", "kind", "units", "cell units", "directions", "max length"], rows))
    print("\nvariables:")
    rows = [[str(k), ", ".join(map(str, v.dims)), str(v.dtype), v.attrs.get("long_name", "")]
            for k, v in ds.data_vars.items()]  # fmt: skip
    print(format_table(["name", "dims", "dtype", "meaning"], rows))
    print("\nprovenance:")
    for key, value in ds.attrs.items():
        text = str(value)
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    if args.summary:
        print("\n" + summary_table(ds))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .viz.report import report

    ds = open_acts(args.file)
    reference = open_acts(args.reference) if args.reference else None
    for option in ("group", "kinds"):
        name = getattr(args, option)
        if name is not None and name not in ds.variables:
            raise CLIError(f"--{option}: {args.file} has no variable {name!r} along sample")
    print(report(ds, args.out, group=args.group, reference=reference, kinds=args.kinds, baseline=args.baseline))  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    quick = {"n_train": 256, "n_reference": 256, "n_test": 16, "epochs": 8} if args.quick else {}
    run_demo(args.out, DemoConfig(seed=args.seed, **quick))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqacts", description="Record and analyse per-timestep activations of RNNs."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
        p.set_defaults(func=func)
        return p

    p = command(
        "demo", cmd_demo, "train a small LSTM autoencoder on sensor data and diagnose anomalies"
    )
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="tiny data and training (smoke test)")

    p = command("extract", cmd_extract, "record a model's activations over an input file")
    p.add_argument("model", metavar="MODEL", help="package.module:factory returning the nn.Module")
    p.add_argument("--weights", metavar="CKPT", help="state_dict saved with torch.save")
    p.add_argument("--input", required=True, metavar="DATA", help=".npy, .pt or .nc input")
    p.add_argument("--variable", help="which variable/tensor of a .nc/.pt input to use")
    p.add_argument("--out", required=True, metavar="FILE.nc", help="netCDF file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layer labels or patterns")
    p.add_argument("--internals", action="store_true", help="also record cell states and gates")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="samples per forward")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--batch-first", dest="batch_first", action="store_true", default=True,
                        help="input is (sample, time, feature) (default)")  # fmt: skip
    layout.add_argument("--time-first", dest="batch_first", action="store_false",
                        help="input is (time, sample, feature)")  # fmt: skip

    p = command("info", cmd_info, "describe a recorded netCDF file")
    p.add_argument("file", metavar="FILE.nc")
    p.add_argument("--summary", action="store_true", help="also compute per-layer statistics")
    p.add_argument("--verify", action="store_true", help="read every chunk, check its checksum "
                   "and report problems (exit status 1 if any)")

    p = command("report", cmd_report, "write an HTML report of a recorded netCDF file")
    p.add_argument("file", metavar="FILE.nc")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--group", help="boolean/categorical variable along sample to compare")
    p.add_argument("--reference", metavar="NORMAL.nc", help="recording of known-normal samples "
                   "for the anomaly scores (default: the baseline samples, out of fold)")  # fmt: skip
    p.add_argument("--kinds", help="categorical variable naming each anomaly's kind")
    p.add_argument("--baseline", help="the value the others are compared with (e.g. normal)")
    return parser


def _one_line(err: BaseException) -> str:
    """An error message on one line (libraries' messages may span several)."""
    return " ".join(str(err).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqacts`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("seqacts: interrupted", file=sys.stderr)
        return 130
    except (SeqactsError, FileNotFoundError, FileExistsError) as err:
        if args.debug:
            raise
        print(f"seqacts {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.debug:
            raise
        print(f"seqacts {args.command}: unexpected {type(err).__name__}: {_one_line(err)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
