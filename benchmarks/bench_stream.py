"""Streaming to netCDF: throughput, storage options, checksums, peak memory, Dask workers.

Model: 2-layer LSTM, hidden 256, input 32, T=256, batches of 64, CPU float32 (33.5 MB of ``h``
per batch). Public API only. Sections:

1. End to end: ``extract_to_netcdf`` against in-memory ``extract()`` of every batch plus one
   plain ``Dataset.to_netcdf`` of the concatenated arrays (which needs all of it in memory).
2. Write path (model excluded): ``seqacts.write_stream`` of already-extracted batches; size,
   write and read MB/s for each storage option, and the cost of fletcher32 checksums.
3. Peak RSS of a streaming run writing ``--peak-gb`` GB (default 1; ``--peak-gb 1,3`` for the
   README), and of a reduction (``open_dataset(...).h.mean("sample")``) over that file. To
   reach gigabytes in minutes it records a 1-layer LSTM (input 32, hidden 64) with
   ``internals=True``: six variables per step, 100 MB per batch of 256 x T=256.
4. ``extract_distributed`` on a ``LocalCluster`` with 1 and 2 single-threaded workers.

Prints; asserts nothing about time. Figures vary with the machine's load: rerun to compare.
``--quick`` shrinks everything for a smoke run.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import xarray as xr
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

import seqacts  # noqa: E402
from seqacts import extract_distributed, extract_to_netcdf, open_dataset, write_stream  # noqa: E402

STEPS, HIDDEN, INPUTS, BATCH = 256, 256, 32, 64


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.LSTM(INPUTS, HIDDEN, num_layers=2, batch_first=True).eval()


def make_batches(n: int, steps: int = STEPS) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, steps, INPUTS, generator=g) for _ in range(n)]


def mb(ds: xr.Dataset) -> float:
    return sum(v.nbytes for v in ds.variables.values() if "sample" in v.dims) / 1e6


def floor_vs_stream(model: nn.Module, batches: list[torch.Tensor], work: Path,
                    repeats: int) -> None:
    def floor() -> tuple[float, float, float]:
        start = time.perf_counter()
        parts = [seqacts.extract(model, b) for b in batches]
        t_extract = time.perf_counter() - start
        whole = xr.concat(parts, dim="sample", combine_attrs="override")
        start = time.perf_counter()
        whole.to_netcdf(work / "floor.nc", engine="netcdf4")
        return t_extract, time.perf_counter() - start, mb(whole)

    def streamed() -> float:
        start = time.perf_counter()
        extract_to_netcdf(model, batches, work / "stream.nc", progress=False, overwrite=True)
        return time.perf_counter() - start

    seqacts.extract(model, batches[0])  # warm up
    runs = [(floor(), streamed()) for _ in range(repeats)]  # round-robin; best of each
    t_extract, t_write, size = min(r[0] for r in runs)
    t_stream = min(r[1] for r in runs)
    n = len(batches) * BATCH
    floor_s = t_extract + t_write
    print(f"\n1. {len(batches)} batches, {n} samples, {size:.0f} MB of activations "
          f"(best of {repeats})")
    print(f"   in-memory extract()        {t_extract:7.2f} s  {n / t_extract:8.0f} samples/s")
    print(f"   + plain to_netcdf           {t_write:7.2f} s  {size / t_write:8.0f} MB/s")
    print(f"   floor (extract + write)     {floor_s:7.2f} s  {n / floor_s:8.0f} samples/s "
          f"{size / floor_s:6.0f} MB/s")
    print(f"   extract_to_netcdf           {t_stream:7.2f} s  {n / t_stream:8.0f} samples/s "
          f"{size / t_stream:6.0f} MB/s   {floor_s / t_stream:.2f}x the floor's speed")


def storage_options(model: nn.Module, batches: list[torch.Tensor], work: Path) -> None:
    parts = [seqacts.extract(model, b) for b in batches]
    size = sum(mb(p) for p in parts)
    print(f"\n2. write path: write_stream of {size:.0f} MB of extracted activations (model "
          "excluded)")
    print(f"   {'option':24s} {'size MB':>8s} {'ratio':>6s} {'write MB/s':>11s} "
          f"{'read MB/s':>10s} {'max abs err':>12s}")
    for label, compression, pack, checksums in [
            ("None, no checksums", None, None, False), ("None (default)", None, None, True),
            ("zlib", "zlib", None, True), ("zstd", "zstd", None, True),
            ('pack="int16"', None, "int16", True), ("int16 + zstd", "zstd", "int16", True)]:
        path = work / f"opt-{compression}-{pack}-{checksums}.nc"
        start = time.perf_counter()
        write_stream(parts, path, compression=compression, pack=pack, checksums=checksums)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        with open_dataset(path) as ds:
            ds["h"].sum().compute()
        read = time.perf_counter() - start
        with xr.open_dataset(path) as ds:
            err = float(abs(ds["h"][:BATCH] - parts[0]["h"]).max())
        on_disk = path.stat().st_size / 1e6
        print(f"   {label:24s} {on_disk:8.0f} {size / on_disk:6.2f} {size / seconds:11.0f} "
              f"{size / read:10.0f} {err:12.1e}")
        path.unlink()
    best = {True: float("inf"), False: float("inf")}
    for _ in range(3):  # round-robin, best of 3: one write above is at the mercy of the load
        for checksums in (False, True):
            start = time.perf_counter()
            write_stream(parts, work / "cost.nc", checksums=checksums, overwrite=True)
            best[checksums] = min(best[checksums], time.perf_counter() - start)
    print(f"   checksums (fletcher32), best of 3 round-robin: {size / best[False]:.0f} MB/s "
          f"without, {size / best[True]:.0f} MB/s with: write time {best[True] / best[False]:.2f}x")


PEAK = """
import sys, torch
from pathlib import Path
from torch import nn
from seqacts import extract_to_netcdf
torch.manual_seed(0)
model, g = nn.LSTM(32, 64, batch_first=True).eval(), torch.Generator().manual_seed(1)
batches = (torch.randn({batch}, {steps}, 32, generator=g) for _ in range(int(sys.argv[1])))
extract_to_netcdf(model, batches, Path(sys.argv[2]), internals=True, progress=False)
# VmHWM, not ru_maxrss: the latter keeps the forked parent's peak across exec
print(next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""

REDUCE = """
import sys
from seqacts import open_dataset
def mem(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
with open_dataset(sys.argv[1]) as ds:
    before = mem("VmRSS")
    ds["h"].mean("sample").compute()
print(before, mem("VmHWM"))
"""


def peak_memory(work: Path, sizes_gb: list[float], steps: int, batch: int) -> None:
    per_batch = batch * steps * 64 * 4 * 6  # h, c and four gates
    print(f"\n3. peak RSS (VmHWM) of a streaming run and of a reduction over its file (LSTM "
          f"hidden 64, internals=True, batches of {batch} x T={steps}, {per_batch / 1e6:.0f} MB "
          "each)")
    script = textwrap.dedent(PEAK).format(steps=steps, batch=batch)
    for gb in sizes_gb:
        n = max(2, round(gb * 1e9 / per_batch))
        path = work / f"peak-{n}.nc"
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script, str(n), str(path)], check=True,
                             capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak = int(out.stdout.split()[-1])
        size = path.stat().st_size
        red = subprocess.run([sys.executable, "-c", textwrap.dedent(REDUCE), str(path)],
                             check=True, capture_output=True, text=True).stdout.split()
        before, top = int(red[-2]), int(red[-1])
        print(f"   {n:4d} batches  file {size / 1e6:7.0f} MB  {size / 1e6 / seconds:5.0f} MB/s "
              f"end to end  write peak RSS {peak / 1e6:6.0f} MB  reduction peak RSS "
              f"{top / 1e6:6.0f} MB (+{(top - before) / 1e6:.0f} MB over the opened file)")
        path.unlink()


def workers(model: nn.Module, n_samples: int, steps: int, work: Path) -> None:
    from distributed import Client, LocalCluster

    def load(start: int, stop: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(start)
        return list(torch.randn(stop - start, steps, INPUTS, generator=g).split(BATCH))

    shard = max(1, n_samples // 8)
    print(f"\n4. extract_distributed, {n_samples} samples, T={steps}, shards of {shard} samples")
    start = time.perf_counter()
    inputs = (b for s in range(0, n_samples, shard) for b in load(s, min(s + shard, n_samples)))
    extract_to_netcdf(model, inputs, work / "local.nc", progress=False)
    local = time.perf_counter() - start
    print(f"   no cluster {local:7.2f} s  {n_samples / local:7.0f} samples/s  (one process, "
          f"torch threads={torch.get_num_threads()})")
    base = None
    for k in (1, 2):
        with LocalCluster(n_workers=k, threads_per_worker=1, processes=True,
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            times = []
            for _ in range(2):  # the first run also warms up the workers: keep the best
                start = time.perf_counter()
                extract_distributed(model, load, n_samples, work / f"dist-{k}", client=client,
                                    shard_size=shard, overwrite=True, progress=False)
                times.append(time.perf_counter() - start)
            seconds = min(times)
        with open_dataset(work / f"dist-{k}") as ds:
            size = mb(ds)
        base = base or seconds
        print(f"   {k} worker{'s' if k > 1 else ' '} {seconds:7.2f} s  {n_samples / seconds:7.0f} "
              f"samples/s  {size / seconds:6.0f} MB/s  speed-up {base / seconds:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--size-mb", type=float, default=1024, help="activations to write")
    parser.add_argument("--skip", default="", help="sections to skip, e.g. 1,4")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peak-gb", default="1", help="output sizes for section 3, e.g. 1,3")
    args = parser.parse_args()
    skip = {int(s) for s in args.skip.split(",") if s}
    per_batch = BATCH * 2 * (32 if args.quick else STEPS) * HIDDEN * 4 / 1e6
    n_batches = 3 if args.quick else max(2, round(args.size_mb / per_batch))
    model = make_model()
    print(f"machine: {machine()}")
    print(f"model: LSTM 2 layers, hidden {HIDDEN}, input {INPUTS}, "
          f"T={32 if args.quick else STEPS}, batch {BATCH}, "
          f"CPU float32; {per_batch:.1f} MB of h per batch")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        batches = make_batches(n_batches, 32 if args.quick else STEPS)
        if 1 not in skip:
            floor_vs_stream(model, batches, work, args.repeats)
        if 2 not in skip:
            storage_options(model, batches, work)
        if 3 not in skip:
            peak_memory(work, [0.005, 0.02] if args.quick else
                        [float(g) for g in args.peak_gb.split(",")], 32 if args.quick else STEPS,
                        64 if args.quick else 256)
        if 4 not in skip:
            workers(model, 256 if args.quick else 2048, 32 if args.quick else 64, work)


if __name__ == "__main__":
    main()
