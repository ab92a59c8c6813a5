"""Peak memory of the analyses on a large streamed file, per chunking of the opened dataset.

Writes a file of 2-layer LSTM activations (hidden 256, T=256, ~1.1 GB of ``h`` for 2048
samples) with :func:`seqacts.extract_to_netcdf`, then runs ``summary``, ``dead_units`` and
``report`` each in a fresh process on the dataset opened by :func:`seqacts.open_dataset` with
each chunking, and prints the process's peak RSS and wall time. Peak RSS includes the
~300-400 MB of the imported libraries; the ``open only`` row is that floor.

Prints; asserts nothing. ``--quick`` writes a few MB and measures the default chunking only,
for a smoke run; ``--file`` reuses a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

#: The chunkings compared: the library default, and the pre-issue-14 default of xarray's "auto".
CHUNKINGS: dict[str, str] = {"default": "None", '"auto" (~128 MiB)': "'auto'"}
ANALYSES: dict[str, str] = {
    "open only": "ds['h'].isel(sample=0, layer=0, time=0).values",
    "summary": "seqacts.summary(ds)",
    "dead_units": "seqacts.dead_units(ds)",
    "report": "seqacts.report(ds, tempfile.mkdtemp())",
}

CHILD = textwrap.dedent(
    """
    import json, resource, sys, tempfile, time, warnings
    warnings.simplefilter("ignore")
    import seqacts
    path, chunks, call = sys.argv[1], eval(sys.argv[2]), sys.argv[3]
    kwargs = {} if chunks is None else {"chunks": chunks}
    started = time.perf_counter()
    ds = seqacts.open_dataset(path, **kwargs)
    eval(call)
    seconds = time.perf_counter() - started
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": seconds}))
    """
)


def write_file(path: Path, samples: int, steps: int, hidden: int) -> None:
    import torch
    from torch import nn

    import seqacts

    torch.manual_seed(0)
    model = nn.LSTM(32, hidden, num_layers=2, batch_first=True).eval()
    gen = torch.Generator().manual_seed(1)
    batch = min(64, samples)
    batches = (torch.randn(batch, steps, 32, generator=gen) for _ in range(samples // batch))
    seqacts.extract_to_netcdf(model, batches, path, overwrite=True, progress=False)


def measure(path: Path, chunks: str, call: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), chunks, call],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few MB, for a smoke run")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--file", type=Path, help="reuse this file instead of writing one")
    args = parser.parse_args()
    samples, steps, hidden = (64, 32, 32) if args.quick else (args.samples, 256, 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or Path(tmp) / "acts.nc"
        if args.file is None or not path.exists():
            started = time.perf_counter()
            write_file(path, samples, steps, hidden)
            print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
        size = path.stat().st_size / 1e6
        print(f"{platform.machine()} cores={os.cpu_count()}; file {size:.0f} MB "
              f"({samples} samples, T={steps}, 2 LSTM layers of {hidden})")  # fmt: skip
        chunkings = {"default": CHUNKINGS["default"]} if args.quick else CHUNKINGS
        print(f"\n| analysis | {' | '.join(chunkings)} |")
        print("|---|" + "---|" * len(chunkings))
        for name, call in ANALYSES.items():
            cells = []
            for chunks in chunkings.values():
                r = measure(path, chunks, call)
                cells.append(f"{r['rss_mb']:.0f} MB, {r['seconds']:.1f} s")
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
        print("\npeak RSS of the whole process (libraries included), wall time of open + analysis")


if __name__ == "__main__":
    main()
