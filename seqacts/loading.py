"""Building the user's model from the command line: ``package.module:factory`` and its weights.

:func:`build_model` imports the factory (the current directory is importable), calls it, loads
a ``state_dict`` with ``torch.load(weights_only=True)`` and switches the model to eval mode.
Every mistake raises :class:`~seqacts.errors.CLIError` on one line with the fix; an exception
from the user's own code becomes a :class:`~seqacts.errors.UserCodeError` saying where it came
from. A checkpoint saved from ``nn.DataParallel``/``DistributedDataParallel`` (every key
prefixed ``module.``) is recognised and the prefix stripped, which is said in one line.
:func:`check_input` and :func:`try_forward` catch an input that does not fit the model before
the recording starts.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .cli_checks import from_user_code
from .errors import CLIError
from .inputs import existing_file, safe_load

__all__ = [
    "STATE_KEYS",
    "build_model",
    "check_input",
    "check_model_spec",
    "load_factory",
    "load_weights",
    "model_float",
    "strip_prefix",
    "try_forward",
]

MODEL_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: Keys of a checkpoint dict under which a ``state_dict`` is commonly saved.
STATE_KEYS = ("state_dict", "model_state_dict", "model")
#: Prefixes wrappers add to every key: ``nn.DataParallel``/DDP and ``torch.compile``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


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


def build_model(spec: str, weights: str | None, say: Callable[[str], None] | None = None) -> Any:
    """Call the factory, load ``weights`` (``weights_only=True``) and switch to eval mode.

    ``say(line)`` is told what was done to make the weights fit (a stripped prefix).
    """
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
        load_weights(model, state, weights, say)
    return model.eval()


def strip_prefix(state: Mapping[str, Any], own: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """``state`` without a wrapper's prefix on every key (when the model's keys lack it), and
    the prefix stripped (``""`` when none)."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(str(k).startswith(prefix) for k in state) and not any(
            str(k).startswith(prefix) for k in own
        ):
            return {str(k)[len(prefix):]: v for k, v in state.items()}, prefix
    return state, ""


def load_weights(model: Any, state: Any, name: str,
                 say: Callable[[str], None] | None = None) -> None:
    """``model.load_state_dict(state)`` with a one-line account of what does not fit."""
    if isinstance(state, Mapping):
        for key in STATE_KEYS:
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise CLIError(f"--weights: {name} holds a {type(state).__name__}, not a state_dict")
    own = model.state_dict()
    state, prefix = strip_prefix(state, own)
    if prefix and say is not None:
        say(f"--weights: every key of {name} starts with {prefix!r} (saved from a wrapper such "
            f"as nn.DataParallel); stripped it")  # fmt: skip
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


def model_float(model: Any) -> Any:
    """The dtype floating inputs are converted to: that of ``model``'s first floating parameter
    (:func:`seqacts.capture.numpy_inputs.model_float`, the API's rule for NumPy input)."""
    from .capture.numpy_inputs import model_float as rule  # torch only once the model is built

    return rule(model)

