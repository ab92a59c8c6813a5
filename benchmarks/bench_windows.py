"""Peak memory and time of ``match`` and ``top_windows`` on a large streamed file.

Writes the same ~1.1 GB file of 2-layer LSTM activations as ``bench_analysis_memory.py``
(hidden 256, T=256, 2048 samples), then runs each search in a fresh process on the dataset
opened lazily by :func:`seqacts.open_dataset` and prints the process's peak RSS and wall time,
next to the ``open only`` floor (the imported libraries) and the size of the layer searched, so
the ratio says whether memory stays bounded. ``match`` with the default threshold reads the
layer 4 times (3 passes of exact percentile selection, 1 of scoring); with a given threshold
once.

Prints; asserts nothing. ``--quick`` writes a few MB, for a smoke run; ``--file`` reuses a file.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analysis_memory import write_file  # noqa: E402

SEARCHES: dict[str, str] = {
    "open only": "ds['h'].isel(sample=0, layer=0, time=0).values",
    "match, default threshold (80th pct)": "seqacts.match(ds, 5, 'l1', slice(100, 104), "
    "units=[0, 1, 2, 3])",
    "match, threshold=0": "seqacts.match(ds, 5, 'l1', slice(100, 102), threshold=0.0)",
    "top_windows": "seqacts.top_windows(ds, 'l1', 7, width=16)",
}

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    import seqacts
    path, call = sys.argv[1], sys.argv[2]
    started = time.perf_counter()
    ds = seqacts.open_dataset(path)
    out = eval(call)
    seconds = time.perf_counter() - started
    ranks = int(out.sizes.get("rank", 0)) if hasattr(out, "sizes") else 0
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": seconds, "ranks": ranks}))
    """
)


def measure(path: Path, call: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), call],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{call} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few MB, for a smoke run")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--file", type=Path, help="reuse this file instead of writing one")
    args = parser.parse_args()
    samples, steps, hidden = (64, 128, 32) if args.quick else (args.samples, 256, 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or Path(tmp) / "acts.nc"
        if not path.exists():
            started = time.perf_counter()
            write_file(path, samples, steps, hidden)
            print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
        import seqacts

        with seqacts.open_dataset(path) as ds:
            layer_mb = ds["h"].isel(layer=1).nbytes / 2**20
            shape = dict(ds.sizes)
        size = path.stat().st_size / 1e6
        print(f"{platform.machine()} cores={os.cpu_count()}; file {size:.0f} MB {shape}; "
              f"layer l1's h: {layer_mb:.0f} MiB")  # fmt: skip
        print("\n| call | peak RSS | wall time | windows |")
        print("|---|---|---|---|")
        floor = None
        for name, call in SEARCHES.items():
            r = measure(path, call)
            floor = r["rss_mb"] if floor is None else floor
            extra = f" (+{r['rss_mb'] - floor:.0f} MB over open)" if name != "open only" else ""
            print(f"| {name} | {r['rss_mb']:.0f} MB{extra} | {r['seconds']:.1f} s | "
                  f"{r['ranks']} |", flush=True)  # fmt: skip
        print("\npeak RSS of the whole process (libraries included), wall time of open + call")


if __name__ == "__main__":
    main()
