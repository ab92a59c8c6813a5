"""The ``seqacts`` command line: ``demo``, ``extract``, ``info`` and ``report``.

Mistakes a user can fix (a missing file, a bad ``MODEL`` string, weights or input that do not fit
the model) print one line naming the problem and the fix and exit with status 2; an exception
raised by the user's own code (the model's module, factory or forward) prints one line saying
where it came from and exits with status 1; ``--debug`` shows the traceback instead.

Arguments, input files and destinations are checked before torch is imported and the model is
built, so these mistakes are reported within a second.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .cli_checks import (
    along_sample,
    check_group,
    check_out_dir,
    check_out_file,
    describe_values,
    from_user_code,
    one_line,
    safe_message,
)
from .errors import CLIError, SeqactsError, UserCodeError
from .inputs import (
    AXES,
    count_nonfinite,
    disk_size,
    existing_file,
    open_acts,
    parse_layout,
    read_coords,
    read_input,
    safe_load,
)

__all__ = ["CLIError", "main"]

MODEL_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
STATE_KEYS = ("state_dict", "model_state_dict", "model")
TIME_FIRST = ("time", "sample", "feature")


def check_model_spec(spec: str) -> None:
    """Check ``MODEL`` has the form ``package.module:factory`` (without importing anything)."""
    if not MODEL_RE.match(spec):
        raise CLIError(
            f"MODEL: expected 'package.module:factory' (e.g. seqacts.demo:build_model), got {spec!r}"
        )


def load_factory(spec: str) -> Callable[[], Any]:
    """Resolve ``package.module:factory`` (the current directory is importable)."""
    check_model_spec(spec)
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
    except Exception as err:
        raise from_user_code(f"MODEL: importing {module_name}", err) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"MODEL: {module_name!r} has no attribute {attr!r}; check the name")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CLIError(f"MODEL: {spec} is not callable; point it at a function returning the model")
    return obj


def build_model(spec: str, weights: str | None) -> Any:
    """Call the factory, load ``weights`` (``weights_only=True``) and switch to eval mode."""
    from torch import nn

    factory = load_factory(spec)
    try:
        model = factory()
    except Exception as err:
        raise from_user_code(f"MODEL: {spec.split(':')[1]}()", err) from err
    if not isinstance(model, nn.Module):
        raise CLIError(f"MODEL: {spec}() returned {type(model).__name__}, not a torch.nn.Module; "
                       "point MODEL at a function returning the model")  # fmt: skip
    if weights is not None:
        state = safe_load(existing_file(weights, "--weights"),
                          f"--weights: cannot load {weights} with weights_only=True",
                          "save the weights with torch.save(model.state_dict(), path)")
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


def check_input(model: Any, x: Any, batch_first: bool, name: str = "the input") -> None:
    """Catch the common shape and dtype mistakes before running anything, with the fix."""
    from .capture.modules import is_stack, module_kind

    layout = "(sample, time, feature)" if batch_first else "(time, sample, feature)"
    first = next((m for m in model.modules() if next(m.parameters(False), None) is not None), None)
    if first is None or module_kind(first) is None:
        return
    if not x.is_floating_point():
        raise CLIError(
            f"--input: {name} holds {str(x.dtype).replace('torch.', '')} values but the model's "
            f"first layer ({type(first).__name__}) takes floats; save the input as float32, e.g. "
            "np.save(path, x.astype('float32'))"
        )
    if x.dim() != 3:
        raise CLIError(
            f"--input: expected a 3-D array {layout}, got shape {tuple(x.shape)}; "
            "add a sample axis (x[None]) for a single sequence"
        )
    own = getattr(first, "batch_first", batch_first)
    if is_stack(first) and own != batch_first:
        flag = "--batch-first" if own else "--time-first"
        raise CLIError(
            f"--input: the model's first recurrent layer has batch_first={own}, so it reads "
            f"its input as {'(sample, time, feature)' if own else '(time, sample, feature)'}; "
            f"pass {flag} (and lay the data out that way, or describe it with --layout)"
        )
    if x.shape[-1] != first.input_size:
        raise CLIError(
            f"--input: {x.shape[-1]} features per step but the model's first recurrent layer "
            f"expects input_size={first.input_size}; input shape {tuple(x.shape)} read as "
            f"{layout} (use --layout or --time-first/--batch-first to change)"
        )


def batches(x: Any, size: int, batch_first: bool) -> Iterator[Any]:
    """Split ``x`` along its sample axis into chunks of ``size`` samples."""
    yield from x.split(size, dim=0 if batch_first else 1)


def try_forward(model: Any, x: Any, batch_first: bool) -> None:
    """Run the model on its first two samples: an error there is the model's, and said so."""
    import torch

    head = x[:2] if batch_first else x[:, :2]
    with torch.no_grad():
        try:
            model(head)
        except Exception as err:
            raise from_user_code(
                f"MODEL: forward of {type(model).__name__} on input of shape {tuple(head.shape)} "
                f"(dtype {str(head.dtype).replace('torch.', '')})",
                err,
            ) from err


def _layout(args: argparse.Namespace) -> tuple[str, ...]:
    if args.layout is not None:
        return parse_layout(args.layout)
    return AXES if args.batch_first else TIME_FIRST


def cmd_extract(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CLIError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    layout = _layout(args)
    keras_file = args.model.endswith(".keras")  # a saved Keras 3 model (seqacts.cli_keras)
    if keras_file:
        from .cli_keras import check_keras_args

        check_keras_args(args)
    else:
        check_model_spec(args.model)
    out = check_out_file(args.out, args.overwrite)
    if args.weights is not None:
        existing_file(args.weights, "--weights")
    data = read_input(args.input, args.variable, layout)
    bad, samples = count_nonfinite(data.array)
    if bad and not args.allow_nan:
        raise CLIError(
            f"--input: {bad} NaN or infinite values in {samples} of {data.n_samples} samples; "
            "the model would carry them into every later step. Clean the data, or pass "
            "--allow-nan to record them anyway"
        )
    coords = dict(data.coords)
    if args.coords is not None:
        coords.update(read_coords(args.coords, data.n_samples))
    if keras_file:
        from .cli_keras import extract_keras

        return extract_keras(args, out, data, coords)
    # Everything above ran without torch; from here on the model is built and run.
    import torch

    import seqacts

    from .io.labels import add_sample_coords

    model = build_model(args.model, args.weights)
    x = torch.from_numpy(data.array)
    if x.is_floating_point():
        x = x.float()
    if not args.batch_first:
        x = x.transpose(0, 1)
    check_input(model, x, args.batch_first, Path(args.input).name)
    try_forward(model, x, args.batch_first)
    progress = sys.stderr.isatty()
    chunks = list(batches(x, args.batch_size, args.batch_first))
    out.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"time": data.time} if data.time is not None else {}
    seqacts.extract_to_netcdf(model, chunks, out, layers=args.layers, internals=args.internals,
                              compression=args.compression, pack=args.pack, overwrite=True,
                              progress=progress, **kwargs)  # fmt: skip
    if coords:
        add_sample_coords(out, coords)
    labels = f"; labels along sample: {', '.join(coords)}" if coords else ""
    print(f"wrote {out}: {data.n_samples} samples, {out.stat().st_size / 1e6:.1f} MB{labels}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .analysis.summary import format_table, summary_table

    if args.verify:
        from .io.integrity import verify

        report = verify(existing_file(args.file, "FILE"))
        print(report)
        return 0 if report.ok else 1
    ds = open_acts(args.file)
    size = disk_size(args.file)
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
    labels = along_sample(ds)
    print("\nlabels along sample (for report --group):"
          + ("" if labels else " none; attach them with `seqacts extract --coords FILE`"))  # fmt: skip
    for name in labels:
        print(f"  {name}: {describe_values(ds[name].values)}")
    print("\nprovenance:")
    for key, value in ds.attrs.items():
        text = str(value)
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    if args.summary:
        print("\n" + summary_table(ds))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out)
    ds = open_acts(args.file)
    if args.group is not None:
        check_group(ds, args.group, args.file)
    reference = open_acts(args.reference, "--reference") if args.reference else None
    from .viz.report import report

    if args.kinds is not None:
        check_group(ds, args.kinds, args.file, "--kinds")
    print(report(ds, out, group=args.group, reference=reference, kinds=args.kinds,
                 baseline=args.baseline))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    check_out_dir(args.out)
    quick = {"n_train": 256, "n_reference": 256, "n_test": 16, "epochs": 8} if args.quick else {}
    run_demo(args.out, DemoConfig(seed=args.seed, **quick))
    return 0


class Parser(argparse.ArgumentParser):
    """``argparse`` with its errors on one line, like every other mistake."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}; see {self.prog} --help\n")


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``seqacts extract``."""
    p.add_argument("model", metavar="MODEL", help="package.module:factory returning the nn.Module, "
                   "or a saved Keras 3 model (FILE.keras)")
    p.add_argument("--weights", metavar="CKPT", help="state_dict saved with torch.save")
    p.add_argument("--input", required=True, metavar="DATA", help=".npy, .pt or .nc input")
    p.add_argument("--variable", help="which variable/tensor of a .nc/.pt input to use")
    p.add_argument("--out", required=True, metavar="FILE.nc", help="netCDF file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layer labels or patterns")
    p.add_argument("--internals", action="store_true", help="also record cell states and gates")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="samples per forward")
    p.add_argument("--coords", metavar="LABELS", help="per-sample labels to attach along sample "
                   "(.csv with one column per label, .npy or .nc)")  # fmt: skip
    p.add_argument("--layout", metavar="AXES", help="the input file's axes in order, e.g. "
                   "sample,feature,time (default sample,time,feature; time,sample,feature with "
                   "--time-first)")  # fmt: skip
    p.add_argument("--compression", choices=["zlib", "zstd"], help="lossless compression")
    p.add_argument("--pack", choices=["int16"], help="store gates and tanh h as int16 (half the "
                   "size, absolute error <= 1.6e-5)")  # fmt: skip
    p.add_argument("--allow-nan", action="store_true", help="record inputs holding NaN or inf")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--batch-first", dest="batch_first", action="store_true", default=True,
                        help="the model takes (sample, time, feature) (default)")  # fmt: skip
    layout.add_argument("--time-first", dest="batch_first", action="store_false",
                        help="the model takes (time, sample, feature)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``seqacts`` parser: one subcommand per ``cmd_*`` function, each with ``--debug``."""
    from . import __version__

    parser = Parser(
        prog="seqacts", description="Record and analyse per-timestep activations of RNNs."
    )
    parser.add_argument("--version", action="version", version=f"seqacts {__version__}")
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
    add_extract_arguments(p)

    p = command("info", cmd_info, "describe a recorded netCDF file or shard directory")
    p.add_argument("file", metavar="FILE.nc")
    p.add_argument("--summary", action="store_true", help="also compute per-layer statistics")
    p.add_argument("--verify", action="store_true", help="read every chunk, check its checksum "
                   "and report problems (exit status 1 if any)")

    p = command("report", cmd_report, "write an HTML report of a recorded file or shard directory")
    p.add_argument("file", metavar="FILE.nc")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--group", help="boolean/categorical variable along sample to compare")
    p.add_argument("--reference", metavar="NORMAL.nc", help="recording of known-normal samples "
                   "for the anomaly scores (default: the baseline samples, out of fold)")  # fmt: skip
    p.add_argument("--kinds", help="categorical variable naming each anomaly's kind")
    p.add_argument("--baseline", help="the value the others are compared with (e.g. normal)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqacts`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("seqacts: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        status, message = describe_failure(err)
        print(f"seqacts {args.command}: {message}", file=sys.stderr)
        return status


def describe_failure(err: Exception) -> tuple[int, str]:
    """The exit status and one-line message for an error a command raised.

    A mistake the user can fix (any :class:`SeqactsError`, a missing or existing file) exits
    with 2; an error from the user's own code, or an unexpected one, with 1.
    """
    debug = " (rerun with --debug for the traceback)"
    if isinstance(err, UserCodeError):
        return 1, f"error: {one_line(err)}{debug}"
    if isinstance(err, (SeqactsError, FileNotFoundError, FileExistsError)):
        return 2, f"error: {one_line(err)}"
    return 1, f"unexpected {type(err).__name__}: {safe_message(err)}{debug}"

if __name__ == "__main__":
    sys.exit(main())
