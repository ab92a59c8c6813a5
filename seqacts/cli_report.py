"""``seqacts report``: the checks, the labels it could use, and the ablation scan from the shell.

``--model M --weights W`` (with ``--input X``, or the ``input`` variable ``extract`` keeps in
the recording) and ``--score recon`` or ``--score output:K`` run the same ablation scan as
``seqacts.report(ds, out, model=, inputs=, score=)``. ``--score VAR`` names a per-sample
variable of the file to lead the scores with; ``--mask VAR`` the boolean (sample, time)
variable marking the anomalous steps (default: the first one, e.g. ``anomaly_mask``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from .cli_checks import along_sample, check_group, check_out_dir, describe_values
from .cli_extract import check_readable
from .errors import CLIError
from .inputs import AXES, existing_file, open_acts, read_input

__all__ = ["OUTPUT_SCORE", "add_report_arguments", "cmd_report", "model_score", "usable_labels"]

#: ``--score output:K``: element K of the model's output at the last step (a class's logit).
OUTPUT_SCORE = re.compile(r"^output:(\d+)$")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``seqacts report``."""
    p.add_argument("file", metavar="FILE.nc")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--group", help="boolean/categorical variable along sample to compare")
    p.add_argument("--reference", metavar="NORMAL.nc", help="recording of known-normal samples "
                   "for the anomaly scores (default: the baseline samples, out of fold)")  # fmt: skip
    p.add_argument("--kinds", help="categorical variable naming each anomaly's kind")
    p.add_argument("--baseline", help="the value the others are compared with (e.g. normal)")
    p.add_argument("--mask", metavar="VAR", help="boolean (sample, time) variable marking the "
                   "anomalous steps (default: the first such variable, e.g. anomaly_mask)")
    p.add_argument("--score", metavar="recon|output:K|VAR", help="with --model: the score the "
                   "ablation scan changes (recon: mean squared error of the output against the "
                   "input; output:K: element K of the last step's output); else a per-sample "
                   "variable of FILE shown first among the scores")
    p.add_argument("--model", metavar="MODEL", help="package.module:factory of the recorded "
                   "model: the report ablates the units it ranks (needs --score)")
    p.add_argument("--weights", metavar="CKPT", help="the model's state_dict")
    p.add_argument("--input", metavar="DATA", help="the input FILE was recorded from (default: "
                   "FILE's 'input' variable, kept by extract)")
    p.add_argument("--variable", help="which variable/tensor of a .nc/.pt --input to use")


def usable_labels(ds: Any) -> str:
    """The boolean and categorical labels along sample that ``--group`` could take, in words."""
    found = []
    for name in along_sample(ds):
        values = ds[name].values
        if values.dtype.kind == "b" or (values.dtype.kind in "OUSiu" and
                                       len(set(values.tolist())) <= 20):
            found.append(f"{name} ({describe_values(values)})")
    if not found:
        return ("FILE has no boolean or categorical labels along sample; attach them with "
                "`seqacts extract --coords FILE` (or keep them in the --input .nc)")
    return "pass --group with one of: " + "; ".join(found)


def model_score(spec: str, x: Any) -> Callable[[Any], Any]:
    """The score ``--score`` names, as a function of the model's outputs."""
    def first(out: Any) -> Any:
        return out[0] if isinstance(out, (tuple, list)) else out

    if spec == "recon":
        def recon(out: Any) -> Any:
            y = first(out)
            if tuple(y.shape) != tuple(x.shape):
                raise CLIError(f"--score recon: the model's output has shape {tuple(y.shape)}, "
                               f"its input {tuple(x.shape)}; recon needs an autoencoder "
                               "(use --score output:K for a classifier)")  # fmt: skip
            return ((y - x) ** 2).flatten(1).mean(1)

        return recon
    m = OUTPUT_SCORE.match(spec)
    if m is None:
        raise CLIError(f"--score: with --model, expected recon or output:K (e.g. output:1), got "
                       f"{spec!r}; a variable of FILE cannot be recomputed from ablated runs")
    k = int(m[1])

    def output(out: Any) -> Any:
        y = first(out)
        y = y[:, -1] if y.dim() == 3 else y
        if k >= y.shape[-1]:
            raise CLIError(f"--score output:{k}: the model's output has {y.shape[-1]} values "
                           "per sample; pick K below that")  # fmt: skip
        return y[:, k]

    return output


def _model_inputs(args: argparse.Namespace, ds: Any, say: Callable[[str], None]) -> tuple[Any, Any]:
    """The model ``--model`` builds and the input batch the scan runs on."""
    import torch

    from .loading import build_model, model_float

    if args.weights is not None:
        existing_file(args.weights, "--weights")
    if args.input is not None:
        array = read_input(args.input, args.variable, AXES).array
    elif "input" in ds:
        array = ds["input"].transpose("sample", "time", ...).values
    else:
        raise CLIError("--model: FILE has no 'input' variable (recorded with --drop input?); "
                       "pass --input DATA, the file it was recorded from")  # fmt: skip
    if args.weights is None:
        say("warning: no --weights, so the scan ablates the factory's untrained model")
    model = build_model(args.model, args.weights, say)
    x = torch.from_numpy(array)
    return model, x.to(model_float(model)) if x.is_floating_point() else x


def cmd_report(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Run ``seqacts report``."""
    out = check_out_dir(args.out)
    check_readable(args.file, say)
    ds = open_acts(args.file)
    for option, name in (("--group", args.group), ("--kinds", args.kinds)):
        if name is not None:
            check_group(ds, name, args.file, option)
    if args.mask is not None and (args.mask not in ds.data_vars
                                  or set(ds[args.mask].dims) != {"sample", "time"}):
        raise CLIError(f"--mask: {args.file} has no (sample, time) variable {args.mask!r}; "
                       "pass a boolean variable marking the anomalous steps")  # fmt: skip
    score = args.score
    if score is not None and args.model is None and score not in ds.variables:
        raise CLIError(f"--score: {args.file} has no variable {score!r}; name a per-sample "
                       "variable, or pass --model with --score recon or output:K")  # fmt: skip
    if args.model is not None and score is None:
        raise CLIError("--model: the ablation scan needs --score recon (autoencoder) or "
                       "--score output:K (classifier)")  # fmt: skip
    if args.group is None and "is_anomaly" not in along_sample(ds):
        if args.model is not None:
            raise CLIError(f"--model: the scan ablates the units that respond to a group; "
                           f"{usable_labels(ds)}")  # fmt: skip
        say(f"no --group, so the report shows activations only; {usable_labels(ds)}")
    reference = open_acts(args.reference, "--reference") if args.reference else None
    extra: dict[str, Any] = {}
    if args.model is not None:
        model, x = _model_inputs(args, ds, say)
        extra = {"model": model, "inputs": x, "score": model_score(score, x)}
    elif score is not None:
        extra = {"score_var": score}
    from .viz.report import report

    path = report(ds, out, group=args.group, reference=reference, kinds=args.kinds,
                  baseline=args.baseline, mask=args.mask, **extra)  # fmt: skip
    summary = path.with_name("summary.txt")
    if summary.exists():
        print(summary.read_text().rstrip())
    print(path)
    return 0
