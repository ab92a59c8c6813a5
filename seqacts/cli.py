"""The ``seqacts`` command line: ``demo``, ``extract``, ``info``, ``report`` and ``view``.

Mistakes a user can fix (a missing file, a bad ``MODEL`` string, weights or input that do not fit
the model) print one line naming the problem and the fix and exit with status 2; an exception
raised by the user's own code (the model's module, factory or forward) prints one line saying
where it came from and exits with status 1; ``--debug`` shows the traceback instead.

Arguments, input files and destinations are checked before torch is imported and the model is
built, so these mistakes are reported within a second.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .cli_checks import (
    along_sample,
    check_out_dir,
    check_out_file,
    describe_values,
    one_line,
    safe_message,
)
from .cli_extract import check_readable
from .cli_report import add_report_arguments
from .errors import CLIError, SeqactsError, UserCodeError
from .inputs import (
    AXES,
    RESERVED,
    InputData,
    count_nonfinite,
    disk_size,
    existing_file,
    open_acts,
    parse_layout,
    read_coords,
    read_input,
)
from .loading import build_model, check_input, check_model_spec, model_float, try_forward

__all__ = ["CLIError", "main"]

TIME_FIRST = ("time", "sample", "feature")


def batches(x: Any, size: int, batch_first: bool) -> Iterator[Any]:
    """Split ``x`` along its sample axis into chunks of ``size`` samples."""
    yield from x.split(size, dim=0 if batch_first else 1)


def _layout(args: argparse.Namespace) -> tuple[str, ...]:
    if args.layout is not None:
        return parse_layout(args.layout)
    return AXES if args.batch_first else TIME_FIRST


def say(line: str) -> None:
    """One line on stderr, for what the user should know but that is no error."""
    print(f"seqacts: {line}", file=sys.stderr, flush=True)


def _input_variables(args: argparse.Namespace, data: InputData) -> dict[str, Any]:
    """The variables of the input kept in the recording: the input itself as ``input`` and a
    .nc input's other per-sample variables, less those ``--drop`` names."""
    dims = ("sample", "time", "feature")[: data.array.ndim]
    keep: dict[str, Any] = {"input": (dims, data.array), **data.extras}
    drop = set(args.drop or ())
    if "all" in drop:
        return {}
    unknown = sorted(drop - set(keep))
    if unknown:
        raise CLIError(f"--drop: the input has no variable {unknown[0]!r} to drop; it keeps "
                       f"{', '.join(keep)} (or pass --drop all)")  # fmt: skip
    return {(f"input_{k}" if k in RESERVED else k): v for k, v in keep.items() if k not in drop}


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (``kill PID``) stops ``extract`` like Ctrl-C: the committed batches are kept."""
    raise KeyboardInterrupt


def cmd_extract(args: argparse.Namespace) -> int:
    from .cli_extract import (
        attach_variables,
        check_not_input,
        committed,
        file_variables,
        plan_destination,
    )

    if args.batch_size < 1:
        raise CLIError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    layout = _layout(args)
    keras_file = args.model.endswith(".keras")  # a saved Keras 3 model (seqacts.cli_keras)
    if keras_file:
        from .cli_keras import check_keras_args

        check_keras_args(args)
    else:
        check_model_spec(args.model)
    check_not_input(args.out, {"--input": args.input, "--coords": args.coords,
                               "--weights": args.weights})  # fmt: skip
    out = check_out_file(args.out, args.overwrite if keras_file else True)
    if not out.parent.is_dir():
        raise CLIError(f"--out: the directory {out.parent} does not exist; create it first "
                       f"(mkdir -p {out.parent})")  # fmt: skip
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
    kept = _input_variables(args, data)
    # Everything above ran without torch; from here on the model is built and run.
    import torch

    import seqacts

    from .io.labels import add_sample_coords

    plan = plan_destination(out, args.overwrite, args.resume, say)
    model = build_model(args.model, args.weights, say)
    x = torch.from_numpy(data.array)
    if x.is_floating_point():
        x = x.to(model_float(model))
        if data.array.dtype != np.dtype(str(x.dtype).replace("torch.", "")):
            say(f"--input: {Path(args.input).name} holds {data.array.dtype}; converted to "
                f"{str(x.dtype).replace('torch.', '')}, the dtype of the model's parameters")
    if not args.batch_first:
        x = x.transpose(0, 1)
    check_input(model, x, args.batch_first, Path(args.input).name)
    try_forward(model, x, args.batch_first)
    if args.weights is None and not args.random_weights:
        say("warning: no --weights, so this records the factory's untrained model; pass "
            "--weights CKPT, or --random-weights to mean it")  # fmt: skip
    chunks = list(batches(x, args.batch_size, args.batch_first))
    kwargs: dict[str, Any] = {"time": data.time} if data.time is not None else {}
    state = committed(plan.target) if plan.resume else None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        seqacts.extract_to_netcdf(model, chunks, plan.target, layers=args.layers,
                                  internals=args.internals, compression=args.compression,
                                  pack=args.pack, resume=plan.resume,
                                  progress=sys.stderr.isatty(), **kwargs)  # fmt: skip
    except KeyboardInterrupt:
        say(f"interrupted: {plan.resume_hint()}")
        return 130
    except Exception:
        if plan.target.exists():
            say(f"stopped: {plan.resume_hint()}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    new = {k: v for k, v in coords.items() if k not in file_variables(plan.target)}
    if new:
        add_sample_coords(plan.target, new)
    attached = attach_variables(plan.target, kept)
    plan.finish()
    labels = f"; labels along sample: {', '.join(coords)}" if coords else ""
    more = f"; input variables kept: {', '.join(attached)}" if attached else ""
    if state is not None and state[1]:
        more += "; it was complete already, nothing was rerun"
    print(f"wrote {out}: {data.n_samples} samples, {out.stat().st_size / 1e6:.1f} MB{labels}{more}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .analysis.summary import format_table, summary_table

    if args.verify:
        from .io.integrity import verify

        check_readable(args.file, say)
        report = verify(existing_file(args.file, "FILE"))
        print(report)
        return 0 if report.ok else 1
    check_readable(args.file, say)
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
    from .cli_report import cmd_report as run

    return run(args, say)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    check_out_dir(args.out)
    quick = {"n_train": 256, "n_reference": 256, "n_test": 16, "epochs": 8} if args.quick else {}
    run_demo(args.out, DemoConfig(seed=args.seed, **quick))
    return 0


def comma_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: one argument per option, so it cannot swallow ``MODEL``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return items


class Parser(argparse.ArgumentParser):
    """``argparse`` with its errors on one line, like every other mistake."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}; see {self.prog} --help\n")


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``seqacts extract``."""
    p.add_argument("model", metavar="MODEL", help="package.module:factory returning the nn.Module, "
                   "or a saved Keras 3 model (FILE.keras)")
    p.add_argument("--weights", metavar="CKPT", help="state_dict saved with torch.save (a "
                   "'module.' prefix from nn.DataParallel is stripped)")
    p.add_argument("--random-weights", action="store_true", help="record the factory's model "
                   "as built, without --weights (else a warning says it is untrained)")
    p.add_argument("--input", required=True, metavar="DATA", help=".npy, .pt or .nc input")
    p.add_argument("--variable", help="which variable/tensor of a .nc/.pt input to use")
    p.add_argument("--out", required=True, metavar="FILE.nc", help="netCDF file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file "
                   "(the old one is kept until the new one is complete)")
    p.add_argument("--resume", action="store_true", help="finish a run that was interrupted "
                   "(Ctrl-C, a crash, kill -9): its committed batches are verified and kept")
    p.add_argument("--drop", type=comma_list, action="extend", metavar="A,B",
                   help="variables of the input not to keep in --out (by default the input "
                   "itself as 'input' and every variable of a .nc input with a sample dim: "
                   "masks, scores); 'all' keeps none")
    p.add_argument("--layers", type=comma_list, action="extend", metavar="A,B",
                   help="layer labels or patterns, comma-separated (repeatable)")
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
    add_report_arguments(p)

    from .viewer.serve import add_arguments as add_view_arguments
    from .viewer.serve import cmd_view

    p = command("view", cmd_view, "explore a recording in the browser (pip install seqacts[view])")
    add_view_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqacts`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("seqacts: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `seqacts info F | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
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
