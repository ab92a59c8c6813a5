"""``modules=`` outputs of convolutions get named dims: ``channel``, then ``time`` (1-d) or
``height``, ``width`` (2-d) or ``depth``, ``height``, ``width`` (3-d); other outputs keep
``dim1, ...``. Values are the module's own output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import seqacts


class ConvRNN(nn.Module):
    """Convolutions beside a GRU over the input, then a linear head on the GRU."""

    def __init__(self, transpose: bool = False) -> None:
        super().__init__()
        conv1 = nn.ConvTranspose1d if transpose else nn.Conv1d
        self.conv = conv1(8, 6, 3, stride=1 if transpose else 2)
        self.image = nn.Conv2d(1, 2, 3, stride=2)
        self.volume = nn.Conv3d(1, 2, (1, 3, 3))
        self.rnn = nn.GRU(8, 4, batch_first=True)
        self.head = nn.Linear(4, 2)
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        self.seen = {"conv": y, "image": self.image(x.unsqueeze(1)),
                     "volume": self.volume(x.unsqueeze(1).unsqueeze(1))}  # fmt: skip
        out = self.head(self.rnn(x)[0])
        self.seen["head"] = out
        return out


@pytest.mark.parametrize("transpose", [False, True])
def test_convolution_outputs_have_named_dims(transpose: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConvRNN(transpose).eval()
    x = torch.randn(3, 10, 8)
    ds = seqacts.extract(model, x, modules=["conv", "image", "volume", "head"])
    assert ds["conv"].dims == ("sample", "conv.channel", "conv.time")
    assert ds["image"].dims == ("sample", "image.channel", "image.height", "image.width")
    assert ds["volume"].dims == ("sample", "volume.channel", "volume.depth", "volume.height",
                                 "volume.width")
    assert ds["head"].dims == ("sample", "head.dim1", "head.dim2")  # not a convolution
    # the convolution's own length (stride 2: 4; transposed: 12), not the dataset's time
    assert ds.sizes["conv.time"] == (12 if transpose else 4) and ds.sizes["time"] == 10
    assert (ds.sizes["image.height"], ds.sizes["image.width"]) == (4, 3)
    for name in ("conv", "image", "volume", "head"):
        np.testing.assert_array_equal(ds[name].values, model.seen[name].numpy())
    path = seqacts.extract_to_netcdf(model, x.split(2), tmp_path / "c.nc", progress=False,
                                     modules=["conv", "image"])
    with seqacts.open_dataset(path) as got:
        assert got["image"].dims == ds["image"].dims
        per_batch = [seqacts.extract(model, b, modules="conv")["conv"].values for b in x.split(2)]
        np.testing.assert_array_equal(got["conv"].values, np.concatenate(per_batch))


def test_an_unbatched_or_indexed_convolution_output_keeps_numbered_dims() -> None:
    class Unbatched(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)
            self.conv = nn.Conv1d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.rnn(x)[0]
            return self.conv(out[0].T)  # (C, L): no batch axis

    ds = seqacts.extract(Unbatched(), torch.randn(1, 5, 3), modules="conv")
    assert ds["conv"].dims == ("sample", "conv.dim1")
