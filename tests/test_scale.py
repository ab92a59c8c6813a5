"""Lazy Dask-backed reading of streamed files, and sharded extraction on a dask cluster."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from seqacts import ablate, extract
from seqacts.io.distributed import extract_distributed
from seqacts.io.reading import open_dataset
from seqacts.io.stream import IncompleteStreamWarning, StreamMismatchError, extract_to_netcdf


@pytest.fixture
def streamed(tmp_path: Path) -> tuple[Path, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.GRU(3, 6, num_layers=2, batch_first=True).eval()
    x = torch.randn(40, 9, 3)
    path = extract_to_netcdf(model, x.split(8), tmp_path / "s.nc", progress=False)
    return path, model, x


def test_open_dataset_is_lazy_and_follows_disk_chunks(streamed: tuple) -> None:
    path, model, x = streamed
    ds = open_dataset(path, chunks={"sample": 16})
    assert isinstance(ds["h"].data, da.Array) and ds["h"].chunks[0] == (16, 16, 8)
    assert isinstance(ds["kind"].variable._data, np.ndarray)  # per-layer labels are loaded
    expected = extract(model, x)  # one call; the stream's 5 batches are model calls 0..4
    expected = expected.assign_coords(model_call=("sample", np.repeat(np.arange(5), 8)))
    xr.testing.assert_equal(ds.load(), expected)
    auto = open_dataset(path)  # "auto": whole multiples of the on-disk chunks
    disk_rows = auto["h"].encoding["chunksizes"][0]
    assert all(c % disk_rows == 0 for c in auto["h"].chunks[0][:-1])


REDUCE = """
import json, os, sys
import dask
from seqacts.io.reading import open_dataset

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

ds = open_dataset(sys.argv[1], chunks={"sample": 16})
with dask.config.set(scheduler="threads", num_workers=2):
    ds["features"][:16].mean("sample").values  # warm up: imports, thread pool
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark to the current RSS
    before = rss()
    mean = ds["features"].mean("sample").values
    spread = ds["h"].std(["sample", "time"]).values
print(json.dumps({"grown": hwm() - before, "mean": float(mean.sum()),
                  "spread": float(spread.sum())}))
"""


class Wide(nn.Module):
    """A small RNN reading wide features; recording the features makes a large file quickly."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.rnn = nn.RNN(4, 16, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.features(x)[:, :, :4])[0]


@pytest.mark.slow
def test_reduction_over_a_file_larger_than_the_memory_it_may_use(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Wide().eval()
    g = torch.Generator().manual_seed(0)
    batches = (torch.randn(32, 128, 512, generator=g) for _ in range(32))  # 268 MB of features
    path = extract_to_netcdf(model, batches, tmp_path / "big.nc", modules="features",
                             progress=False)
    size = path.stat().st_size
    assert size > 250e6
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(REDUCE), str(path)], check=True,
                         capture_output=True, text=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    grown = got["grown"]
    assert grown < size / 8, f"peak RSS grew {grown / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    with xr.open_dataset(path) as ds:  # the same reductions, eagerly, in this process
        assert np.isclose(got["mean"], float(ds["features"].mean("sample").sum()), rtol=1e-4)
        assert np.isclose(got["spread"], float(ds["h"].std(["sample", "time"]).sum()), rtol=1e-4)


def inputs_for(start: int, stop: int) -> Iterator[torch.Tensor]:
    """Shard loader: each sample's input depends only on its index; batches of 4."""
    x = torch.stack([torch.randn(7, 3, generator=torch.Generator().manual_seed(i))
                     for i in range(start, stop)])
    return iter(x.split(4))


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    distributed = pytest.importorskip("distributed")
    # workers cannot import this test module: ship its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.slow
def test_distributed_shards_open_as_one_dataset(client: object, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.LSTM(3, 8, batch_first=True).eval()
    load = lambda start, stop: inputs_for(start, stop)  # noqa: E731 - shipped by value
    out = tmp_path / "shards"
    parts = extract_distributed(model, load, 30, out, client=client, shard_size=8,
                                internals=True, compression="zstd", progress=False)
    assert [p.name for p in parts] == [f"part-{s:012d}.nc" for s in (0, 8, 16, 24)]
    x = torch.cat(list(inputs_for(0, 30)))
    expected = extract(model, x, internals=True)
    with open_dataset(out) as ds:  # (HDF5 locks the files while they are open)
        assert ds.attrs["seqacts_stream_complete"] == 1
        assert ds.attrs["seqacts_stream_samples"] == 30
        got = ds.drop_attrs().load()
        # h is the kernel's own output: exact; recomputed gates may differ by an ulp between
        # batch shapes (matrix-product blocking), so they are compared with a float32 tolerance
        states = ["h", "h_n", "c_n"]
        xr.testing.assert_equal(got[states].drop_vars("model_call"),
                                expected.drop_attrs()[states].drop_vars("model_call"))
        # the shards made several model(...) calls where extract made one: numbered on across
        # the shards, in sample order
        calls = got["model_call"].values
        assert calls[0] == 0 and (np.diff(calls) >= 0).all() and calls[-1] > 0
        xr.testing.assert_allclose(got.drop_vars("model_call"),
                                   expected.drop_attrs().drop_vars("model_call"),
                                   rtol=1e-6, atol=1e-7)

    stamps = [p.stat().st_mtime_ns for p in parts]
    with pytest.raises(FileExistsError, match="resume=True"):
        extract_distributed(model, load, 30, out, client=client, progress=False)
    extract_distributed(model, load, 30, out, client=client, resume=True, internals=True,
                        compression="zstd", progress=False)
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # finished shards are not redone
    with pytest.raises(StreamMismatchError, match="n_samples"):
        extract_distributed(model, load, 31, out, client=client, resume=True, progress=False)

    parts[1].unlink()  # a lost shard: the rest still opens, with a warning
    with pytest.warns(IncompleteStreamWarning, match="22 samples present of 30"):
        with open_dataset(out) as ds:
            assert ds.sizes["sample"] == 22
    extract_distributed(model, load, 30, out, client=client, resume=True, internals=True,
                        compression="zstd", progress=False)  # redoes only the lost shard
    assert [p.stat().st_mtime_ns for i, p in enumerate(parts) if i != 1] == stamps[:1] + stamps[2:]
    with open_dataset(out) as ds:
        xr.testing.assert_allclose(ds.drop_attrs().load().drop_vars("model_call"),
                                   expected.drop_attrs().drop_vars("model_call"), rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_array_equal(ds["model_call"].values, calls)  # the same numbering


@pytest.mark.slow
def test_distributed_applies_edits_on_every_shard(client: object, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.LSTM(3, 6, num_layers=2, batch_first=True).eval()
    load = lambda start, stop: inputs_for(start, stop)  # noqa: E731 - shipped by value
    edits = [ablate("l0", [0, 2], time=slice(1, 4)), ablate("l1", 5, state="c", value=0.5)]
    parts = extract_distributed(model, load, 12, tmp_path / "e", client=client, shard_size=6,
                                edits=edits, progress=False)
    assert len(parts) == 2
    # each batch of 4 as extract() records it with the same edits, bit for bit
    expected = xr.concat([extract(model, b, edits=edits)
                          for s in (0, 6) for b in inputs_for(s, s + 6)], "sample")
    plain = extract(model, torch.cat(list(inputs_for(0, 12))))
    with open_dataset(tmp_path / "e") as ds:
        for name in ("h", "h_n", "c_n"):
            np.testing.assert_array_equal(ds[name].values, expected[name].values)
        assert (ds["h"].sel(layer="l0", unit=[0, 2]).isel(time=slice(1, 4)) == 0).all()
        assert not np.allclose(ds["h"].values, plain["h"].values)
    with pytest.raises(StreamMismatchError, match="edits"):  # resumed without them: refused
        extract_distributed(model, load, 12, tmp_path / "e", client=client, resume=True,
                            progress=False)


@pytest.mark.slow
def test_distributed_checks_what_load_returns(client: object, tmp_path: Path) -> None:
    model = nn.GRU(3, 4, batch_first=True).eval()
    short = lambda start, stop: inputs_for(start, stop - 1)  # noqa: E731 - one sample short
    with pytest.raises(ValueError, match=r"load\(\d+, \d+\) yielded 4 samples, expected 5"):
        extract_distributed(model, short, 10, tmp_path / "bad", client=client, shard_size=5,
                            progress=False)
    with pytest.raises(TypeError, match="unknown option"):
        extract_distributed(model, short, 10, tmp_path / "bad", client=client, overwrite=True,
                            layer="l0")


def replacing_run(directory: str, start: int, stop: int) -> Iterator[torch.Tensor]:
    """Shard loader that, for the shard at 8, first replaces the directory's run (as a newer
    run or a refusal does) while the shard is already running."""
    if start == 8:
        manifest = Path(directory) / "shards.json"
        plan = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**plan, "run": "another"}))
    return inputs_for(start, stop)


@pytest.mark.slow
def test_distributed_refuses_another_model_before_running_any_shard(
    client: object, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model, other = nn.GRU(3, 4, batch_first=True).eval(), nn.GRU(3, 4, batch_first=True).eval()
    load = lambda start, stop: inputs_for(start, stop)  # noqa: E731 - shipped by value
    out = tmp_path / "d"
    parts = extract_distributed(model, load, 16, out, client=client, shard_size=8,
                                progress=False)
    parts[1].unlink()  # an unfinished run
    stamps = parts[0].stat().st_mtime_ns
    with pytest.raises(StreamMismatchError, match=r"model_weights.*no shard was run"):
        extract_distributed(other, load, 16, out, client=client, resume=True, progress=False)
    assert not parts[1].exists() and parts[0].stat().st_mtime_ns == stamps

    # a part written by another model, slipped into the directory: open_dataset names it
    extract_distributed(other, load, 16, tmp_path / "o", client=client, shard_size=8,
                        progress=False)
    (tmp_path / "o" / parts[1].name).rename(parts[1])
    with pytest.raises(StreamMismatchError, match=rf"{parts[1].name} \(model_weights\)"):
        open_dataset(out)


@pytest.mark.slow
def test_shard_of_a_replaced_run_does_not_write(client: object, tmp_path: Path) -> None:
    out = tmp_path / "r"
    model = nn.GRU(3, 4, batch_first=True).eval()
    with pytest.raises(StreamMismatchError, match="current run is another.*not writing"):
        extract_distributed(model, functools.partial(replacing_run, str(out)), 16, out,
                            client=client, shard_size=8, progress=False)
    assert not (out / "part-000000000008.nc").exists()
