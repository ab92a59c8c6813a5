"""Streaming extraction to netCDF: equality with in-memory extract(), storage options, memory,
progress, overwrite/resume safety, and a real ``kill -9`` mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqacts import extract
from seqacts.io.reading import open_dataset
from seqacts.io.stream import IncompleteStreamWarning, StreamMismatchError, extract_to_netcdf

STREAM_ATTRS = ("seqacts_stream_complete", "seqacts_stream_samples", "seqacts_stream_batches",
                "seqacts_stream_sizes", "seqacts_stream_options")


def batches_of(sizes: list[tuple[int, int]], n_in: int = 3, seed: int = 1) -> list[torch.Tensor]:
    """Batch-first inputs, one per (samples, steps)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, t, n_in, generator=g) for n, t in sizes]


def numbered(parts: list[xr.Dataset]) -> list[xr.Dataset]:
    """Each batch's recording is model call 0 of its own: in the file they are 0, 1, ..."""
    return [p.assign_coords(model_call=p.model_call + i) for i, p in enumerate(parts)]


def reference(model: nn.Module, batches: list, **kwargs: object) -> xr.Dataset:
    """What the stream must equal: per-batch extract(), concatenated, samples renumbered."""
    parts = numbered([extract(model, b, **kwargs) for b in batches])
    bare = {d for p in parts for d in p.dims if d not in p.indexes and d != "sample"}
    widest = {d: max(p.sizes[d] for p in parts) for d in bare}  # dims of other modules' outputs
    parts = [p.pad({d: (0, n - p.sizes[d]) for d, n in widest.items()}) for p in parts]
    ds = xr.concat(parts, dim="sample", join="outer", combine_attrs="override")
    return ds.assign_coords(sample=np.arange(ds.sizes["sample"]))


def without_stream_attrs(ds: xr.Dataset, created: str) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in STREAM_ATTRS}
    ds.attrs["created"] = created
    return ds


def assert_stream_equals(path: Path, expected: xr.Dataset) -> None:
    with xr.open_dataset(path) as got:
        xr.testing.assert_identical(without_stream_attrs(got.load(), expected.attrs["created"]),
                                    expected)


@pytest.fixture
def lstm() -> nn.Module:
    torch.manual_seed(0)
    return nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True).eval()


@pytest.mark.parametrize("internals", [False, True])
def test_stream_equals_concat_of_extract(lstm: nn.Module, tmp_path: Path, internals: bool) -> None:
    batches = batches_of([(4, 6), (4, 9), (3, 4), (4, 12)])  # T grows, shrinks, grows
    path = extract_to_netcdf(lstm, iter(batches), tmp_path / "a.nc", internals=internals,
                             progress=False)
    assert_stream_equals(path, reference(lstm, batches, internals=internals))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_stored_as_float32(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = nn.GRU(3, 4, batch_first=True).to(dtype).eval()
    batches = [b.to(dtype) for b in batches_of([(2, 5), (3, 4)])]
    path = extract_to_netcdf(model, batches, tmp_path / "half.nc", modules="*", progress=False)
    with xr.open_dataset(path) as ds:
        assert all(ds[v].dtype == np.float32 for v in ("h", "h_0", "h_n"))
    assert_stream_equals(path, reference(model, batches, modules="*"))


def test_other_modules_with_growing_dims(seq2seq: nn.Module, tmp_path: Path) -> None:
    """Module outputs whose trailing dims change per batch (encoder output: T) are NaN-padded."""
    batches = batches_of([(3, 5), (3, 8), (2, 3)])
    path = extract_to_netcdf(seq2seq, batches, tmp_path / "m.nc", modules=["encoder", "head"],
                             progress=False)
    with xr.open_dataset(path) as got:
        for i, b in enumerate(batches):
            one = extract(seq2seq, b, modules=["encoder", "head"])
            rows = got.isel(sample=slice(3 * i, 3 * i + b.shape[0]))
            for name in one.data_vars:
                region = {d: slice(0, n) for d, n in one[name].sizes.items() if d != "sample"}
                np.testing.assert_array_equal(rows[name].isel(region).values, one[name].values)
                assert int(rows[name].count()) == int(one[name].count())  # NaN elsewhere


def test_time_labels_are_stored_like_xarray_does(lstm: nn.Module, tmp_path: Path) -> None:
    labels = pd.date_range("2024-03-01 00:00", periods=7, freq="10min")
    batches = batches_of([(3, 7), (2, 5)])  # a shorter batch is NaN-padded to every label
    path = extract_to_netcdf(lstm, batches, tmp_path / "t.nc", time=labels, progress=False)
    parts = numbered([extract(lstm, b, time=labels[: b.shape[1]]) for b in batches])
    expected = xr.concat(parts, dim="sample", join="outer", combine_attrs="override")
    assert_stream_equals(path, expected.assign_coords(sample=np.arange(5)))
    with pytest.raises(ValueError, match="7 labels, but a batch has 9 steps"):
        extract_to_netcdf(lstm, batches_of([(2, 9)]), tmp_path / "u.nc", time=labels,
                          progress=False)
    with pytest.raises(StreamMismatchError, match="time_labels"):
        extract_to_netcdf(lstm, batches, path, time=labels + pd.Timedelta("1h"), resume=True)


@settings(max_examples=10, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 7)), min_size=1, max_size=4),
    compression=st.sampled_from([None, "zstd"]),
    pack=st.sampled_from([None, "int16"]),
)
def test_any_batch_shapes(sizes: list[tuple[int, int]], compression: str | None,
                          pack: str | None) -> None:
    torch.manual_seed(0)
    model = nn.GRU(3, 4, batch_first=True).eval()
    batches = batches_of(sizes)
    expected = reference(model, batches, internals=True)
    with tempfile.TemporaryDirectory() as d:  # hypothesis reruns the body; fixtures do not reset
        path = extract_to_netcdf(model, batches, Path(d) / "h.nc", internals=True,
                                 compression=compression, pack=pack, progress=False)
        if pack is None:
            assert_stream_equals(path, expected)
            return
        with xr.open_dataset(path) as got:  # packed: equal up to the int16 quantization
            xr.testing.assert_allclose(got.drop_attrs(), expected.drop_attrs(), atol=1.6e-5,
                                       rtol=0)


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_compression_is_lossless_and_chunked(lstm: nn.Module, tmp_path: Path,
                                             compression: str) -> None:
    batches = batches_of([(8, 6), (8, 6), (5, 7)])
    path = extract_to_netcdf(lstm, batches, tmp_path / "c.nc", compression=compression,
                             progress=False)
    assert_stream_equals(path, reference(lstm, batches))
    with netCDF4.Dataset(path) as nc:
        h = nc["h"]
        assert h.filters()[compression] and h.filters()["shuffle"]
        rows, layers, *_ = h.chunking()
        assert 1 <= rows <= 64 and 8 % rows == 0 and layers == 1
        assert nc.dimensions["sample"].isunlimited() and nc.dimensions["time"].isunlimited()


def test_compressed_batches_off_the_chunk_grid_warn(lstm: nn.Module, tmp_path: Path) -> None:
    batches = batches_of([(8, 3), (5, 3), (8, 3)])  # chunks of 8 samples; 5 breaks the grid
    with pytest.warns(UserWarning, match="inside a compressed chunk of 8 samples"):
        path = extract_to_netcdf(lstm, batches, tmp_path / "w.nc", compression="zstd",
                                 progress=False)
    assert_stream_equals(path, reference(lstm, batches))


def test_pack_int16_halves_h_within_quantization(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.LSTM(3, 32, batch_first=True).eval()
    batches = batches_of([(16, 40)] * 3)
    plain = extract_to_netcdf(model, batches, tmp_path / "f.nc", internals=True, progress=False)
    packed = extract_to_netcdf(model, batches, tmp_path / "p.nc", internals=True, pack="int16",
                               progress=False)
    with xr.open_dataset(plain) as a, xr.open_dataset(packed) as b:
        for name in ("h", "h_n", "input_gate", "forget_gate", "cell_gate", "output_gate"):
            assert b[name].encoding["dtype"] == np.int16 and b[name].dtype == np.float32
            np.testing.assert_allclose(b[name].values, a[name].values, atol=1.6e-5, rtol=0)
            assert np.array_equal(np.isnan(b[name].values), np.isnan(a[name].values))
        for name in ("c", "h_0", "c_0", "c_n"):  # unbounded: kept exact
            assert b[name].encoding["dtype"] == np.float32
            xr.testing.assert_identical(b[name], a[name])
        size_h = a["h"].nbytes + a["input_gate"].nbytes * 4
    saved = os.path.getsize(plain) - os.path.getsize(packed)
    assert saved > 0.4 * size_h


def test_pack_leaves_unbounded_h_and_refuses_out_of_range(tmp_path: Path) -> None:
    torch.manual_seed(0)
    relu = nn.RNN(3, 4, nonlinearity="relu", batch_first=True).eval()
    with pytest.warns(UserWarning, match="no recorded variable has a known range"):
        path = extract_to_netcdf(relu, batches_of([(2, 3)]), tmp_path / "r.nc", pack="int16",
                                 progress=False)
    with xr.open_dataset(path) as ds:
        assert ds["h"].encoding["dtype"] == np.float32
    gru = nn.GRU(3, 4, batch_first=True).eval()
    big_h0 = torch.full((1, 2, 4), 5.0)
    with pytest.raises(ValueError, match="outside"):
        extract_to_netcdf(gru, [(batches_of([(2, 3)])[0], big_h0)], tmp_path / "g.nc",
                          pack="int16", progress=False)


def test_bad_options_and_existing_path(lstm: nn.Module, tmp_path: Path) -> None:
    batches = batches_of([(2, 3)])
    with pytest.raises(ValueError, match="compression"):
        extract_to_netcdf(lstm, batches, tmp_path / "x.nc", compression="lz4")
    with pytest.raises(ValueError, match="pack"):
        extract_to_netcdf(lstm, batches, tmp_path / "x.nc", pack="int8")
    with pytest.raises(ValueError, match="no batch"):
        extract_to_netcdf(lstm, [], tmp_path / "x.nc", progress=False)
    assert not list(tmp_path.iterdir())
    path = extract_to_netcdf(lstm, batches, tmp_path / "x.nc", progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        extract_to_netcdf(lstm, batches, path, progress=False)
    with pytest.raises(ValueError, match="contradict"):
        extract_to_netcdf(lstm, batches, path, overwrite=True, resume=True)


def test_overwrite_replaces_and_failure_keeps_old_file(lstm: nn.Module, tmp_path: Path) -> None:
    old = batches_of([(2, 3)], seed=5)
    path = extract_to_netcdf(lstm, old, tmp_path / "o.nc", progress=False)
    expected_old = reference(lstm, old)

    def failing() -> Iterator[torch.Tensor]:
        yield from batches_of([(3, 4), (3, 4)])
        raise RuntimeError("data source died")

    with pytest.raises(RuntimeError, match="data source died"):
        extract_to_netcdf(lstm, failing(), path, overwrite=True, progress=False)
    assert_stream_equals(path, expected_old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nc"]  # no temporary left behind
    new = batches_of([(3, 4), (3, 5)])
    extract_to_netcdf(lstm, new, path, overwrite=True, progress=False)
    assert_stream_equals(path, reference(lstm, new))


def test_failure_midway_keeps_committed_batches_and_resume_finishes(
    lstm: nn.Module, tmp_path: Path
) -> None:
    batches = batches_of([(3, 4), (3, 6), (3, 5), (2, 7)])

    def dies_after(k: int) -> Iterator[torch.Tensor]:
        yield from batches[:k]
        raise KeyboardInterrupt

    path = tmp_path / "r.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(lstm, dies_after(2), path, progress=False)
    with pytest.warns(IncompleteStreamWarning, match="6 samples of its 2 committed batches"):
        partial = open_dataset(path)
    xr.testing.assert_equal(partial.load(), reference(lstm, batches[:2]))

    calls: list = []
    handle = lstm.register_forward_pre_hook(lambda _, args: calls.append(args[0].shape))
    try:
        extract_to_netcdf(lstm, batches, path, resume=True, progress=False)
        assert calls == [b.shape for b in batches[2:]]  # committed batches were not run again
        assert_stream_equals(path, reference(lstm, batches))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert open_dataset(path).attrs["seqacts_stream_complete"] == 1
        # resuming a finished file checks the batches against the file's, runs nothing
        calls.clear()
        extract_to_netcdf(lstm, batches, path, resume=True, progress=False)
        assert calls == []
    finally:
        handle.remove()
    with pytest.raises(StreamMismatchError, match="already complete with 4 batches.*batch 4"):
        extract_to_netcdf(lstm, batches + batches[:1], path, resume=True, progress=False)


def test_resume_refuses_other_options_model_or_batches(lstm: nn.Module, tmp_path: Path) -> None:
    batches = batches_of([(2, 3), (2, 3), (2, 3)])
    path = tmp_path / "s.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(lstm, _then_interrupt(batches[:2]), path, progress=False)
    with pytest.raises(StreamMismatchError, match="layers"):
        extract_to_netcdf(lstm, batches, path, layers="l0", resume=True, progress=False)
    with pytest.raises(StreamMismatchError, match="compression"):
        extract_to_netcdf(lstm, batches, path, compression="zstd", resume=True, progress=False)
    with pytest.raises(StreamMismatchError, match="internals"):
        extract_to_netcdf(lstm, batches, path, internals=["c"], resume=True, progress=False)
    other = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True).eval()
    with pytest.raises(StreamMismatchError, match="model_weights"):
        extract_to_netcdf(other, batches, path, resume=True, progress=False)
    with pytest.raises(StreamMismatchError, match="yielded only 1"):
        extract_to_netcdf(lstm, batches[:1], path, resume=True, progress=False)
    not_ours = tmp_path / "plain.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(not_ours)
    with pytest.raises(StreamMismatchError, match="not a seqacts stream"):
        extract_to_netcdf(lstm, batches, not_ours, resume=True, progress=False)
    extract_to_netcdf(lstm, batches, path, resume=True, progress=False)  # the right call works
    assert_stream_equals(path, reference(lstm, batches))


def _then_interrupt(batches: list) -> Iterator:
    yield from batches
    raise KeyboardInterrupt


def test_resume_after_longer_uncommitted_write_trims(lstm: nn.Module, tmp_path: Path) -> None:
    """A killed run may leave rows and steps past the committed ones (netCDF cannot shrink a
    dimension); if the resumed run writes fewer, the file is rewritten to the committed size."""
    batches = batches_of([(3, 4), (3, 5)])
    path = tmp_path / "t.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(lstm, _then_interrupt(batches[:1]), path, progress=False)
    with netCDF4.Dataset(path, "a") as nc:  # what an interrupted 8-sample, 9-step write leaves
        nc.set_auto_maskandscale(False)
        nc["h"][3:11, :, :, 0:9, :] = np.full((8, 2, 2, 9, 5), 7.0, np.float32)
        nc["sample"][3:11] = np.arange(3, 11)
    extract_to_netcdf(lstm, batches, path, resume=True, progress=False)
    assert_stream_equals(path, reference(lstm, batches))


def test_inputs_callable_dataloader_and_progress(
    lstm: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    x = batches_of([(10, 6)])[0]
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=4)
    path = extract_to_netcdf(lstm, loader, tmp_path / "d.nc", inputs=lambda b: (b[0],))
    assert_stream_equals(path, reference(lstm, [x[:4], x[4:8], x[8:]]))  # the loader's batches
    err = capsys.readouterr().err
    assert "10/10" in err and "samples/s" in err and "MB/s" in err

    def unsized() -> Iterator[dict]:
        yield {"input": x[:4]}  # a dict batch: keyword arguments
        yield {"input": x[4:]}

    extract_to_netcdf(lstm, unsized(), tmp_path / "g.nc")
    err = capsys.readouterr().err
    assert "g.nc: 0 samples [" in err and "samples/s" in err  # no total known: a counter


def test_memory_is_flat_in_the_number_of_batches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.GRU(3, 32, batch_first=True).eval()

    def peak(n_batches: int) -> int:
        gen = (torch.randn(32, 50, 3) for _ in range(n_batches))
        tracemalloc.start()
        extract_to_netcdf(model, gen, tmp_path / f"{n_batches}.nc", progress=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    batch_bytes = 32 * 50 * 32 * 4
    few, many = peak(2), peak(12)
    assert many < few + 2 * batch_bytes, (few, many)  # 6x the batches, not 6x the memory
    assert os.path.getsize(tmp_path / "12.nc") > 10 * batch_bytes


CHILD = """
import sys, torch
from pathlib import Path
import seqacts.io.stream as stream

append = stream.Writer.append
def announce(self, ds, entry=None):  # say when a batch's write begins: the parent kills then
    print("writing", self.batches, flush=True)
    return append(self, ds, entry)
stream.Writer.append = announce
sys.path.insert(0, {tests!r})
from test_stream import killed_model, killed_batches
stream.extract_to_netcdf(killed_model(), killed_batches(), Path(sys.argv[1]), progress=False,
                         modules="features", compression=sys.argv[2] or None)
"""


class Wide(nn.Module):
    """A small GRU reading a slice of wide features; recording the features makes writes long."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.rnn = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.features(x)[:, :, :4])[0]


def killed_model() -> nn.Module:
    torch.manual_seed(0)
    return Wide().eval()


def killed_batches(n: int = 12) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    for k in range(n):
        yield torch.randn(32, 20 + 5 * (k % 3), 1024, generator=g)


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["", "zstd"])
def test_kill_9_mid_write_keeps_committed_batches_then_resume(
    tmp_path: Path, compression: str
) -> None:
    path = tmp_path / "k.nc"
    script = textwrap.dedent(CHILD).format(tests=str(Path(__file__).parent))
    child = subprocess.Popen([sys.executable, "-c", script, str(path), compression],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == "writing 3":  # batches 0-2 committed; batch 3 being written
            time.sleep(0.004)
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with xr.open_dataset(path) as raw:  # plain xarray still opens it
        assert raw.attrs["seqacts_stream_complete"] == 0
        committed = int(raw.attrs["seqacts_stream_samples"])
    assert committed % 32 == 0 and 96 <= committed < 12 * 32  # whole batches, 3 or more
    all_batches, model = list(killed_batches()), killed_model()
    with pytest.warns(IncompleteStreamWarning):
        partial = open_dataset(path).load()
    xr.testing.assert_equal(partial, reference(model, all_batches[: committed // 32],
                                               modules="features"))
    expected = reference(model, all_batches, modules="features")
    extract_to_netcdf(model, all_batches, path, modules="features", resume=True,
                      compression=compression or None, progress=False)
    assert_stream_equals(path, expected)


def test_write_stream_writes_extracted_datasets_like_extract_to_netcdf(
    lstm: nn.Module, tmp_path: Path
) -> None:
    from seqacts import verify, write_stream

    batches = batches_of([(3, 4), (2, 6)])
    path = write_stream([extract(lstm, b) for b in batches], tmp_path / "w.nc")
    assert verify(path).ok
    with open_dataset(path) as ds:
        got = ds.load()
    want = reference(lstm, batches)
    xr.testing.assert_equal(got.drop_attrs(), want.drop_attrs())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_stream([extract(lstm, batches[0])], path)
