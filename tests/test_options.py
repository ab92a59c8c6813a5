"""One frozen options object: normalised and validated once, shared by every entry point."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import seqacts
from seqacts.errors import ArgumentTypeError, OptionError
from seqacts.io.ncfile import COMPRESSIONS
from seqacts.options import Options
from seqacts.schema import COMPRESSION_NAMES


def test_names_are_normalised_to_tuples() -> None:
    opts = Options(layers="encoder.*", modules=["head"], internals=["c"], edits=None)
    assert opts.layers == ("encoder.*",)
    assert opts.modules == ("head",)
    assert opts.internals == ("c",)
    assert opts.edits == ()
    assert Options(internals=[]).internals is False


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Options().layers = ("l0",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compression": "gzip"}, "compression: expected None or one of 'zlib', 'zstd'"),
        ({"pack": "int8"}, "pack: expected None or one of 'int16'"),
        ({"layers": [3]}, "layers: expected names as strings"),
        ({"inputs": 5}, "inputs: expected a callable"),
    ],
)
def test_bad_values_name_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises((OptionError, ArgumentTypeError), match=message):
        Options(**kwargs)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ArgumentTypeError, match=r"extract_distributed: unknown option 'layer'; options are .*layers"):
        Options.of("extract_distributed", {"layer": "l0"})


def test_storage_names_agree_with_the_file_layer() -> None:
    assert set(COMPRESSIONS) == set(COMPRESSION_NAMES)


def test_options_are_keyword_only() -> None:
    model = torch.nn.GRU(2, 3)
    with pytest.raises(TypeError):
        seqacts.record(model, "l0")  # type: ignore[misc]
    with seqacts.record(model, layers="l0") as rec:
        model(torch.randn(4, 2, 2))
    assert list(rec.to_dataset().layer.values) == ["l0"]
