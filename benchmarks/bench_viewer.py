"""Time and peak memory of ``seqacts view`` on a large file: open, first page, brush, unit click.

Uses the ~1.1 GB file of ``bench_windows.py`` (``--file``, or writes one), and in one fresh
process does what the server does: open the file lazily, build the windows table, build a
browser session's page (the first window's panels, rendered into a Bokeh document), draw the
trajectories of the first layer (the button a large recording's page has), compute match's
thresholds, answer one brush and one unit
click. Prints each step's wall time and the process's peak RSS after it. Peak RSS includes the
imported libraries (~0.5 GB with Panel, HoloViews and Bokeh); the size of ``h`` is printed
beside it.

Prints; asserts nothing. ``--quick`` writes a few MB, for a smoke run.
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

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.simplefilter("ignore")
    rows = []
    started = time.perf_counter()
    def step(name):
        global started
        now = time.perf_counter()
        rows.append([name, now - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024])
        started = now
    import seqacts
    from bokeh.document import Document
    from seqacts.viewer.app import ViewerApp
    from seqacts.viewer.data import Explorer
    step("import seqacts, Panel, HoloViews")
    ds = seqacts.open_dataset(sys.argv[1])
    step("open the file (lazy)")
    ex = Explorer(ds)
    ex.table
    step("windows table")
    app = ViewerApp(ex, title="bench")
    app.layout.server_doc(Document())
    step("first page (windows table, window panels)")
    app.draw_button.clicks += 1
    step(f"trajectories of {ex.layers[0]} (PCA: 2 reads of the layer)")
    layer = ex.layers[-1]
    ex.thresholds(layer)
    step(f"match thresholds of {layer} (4 reads)")
    app.run_match(layer, 100, 102)
    step("brush: match 2 steps")
    app.open_unit(layer, 7)
    step("unit click: top windows, groups, gates")
    print(json.dumps(rows))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few MB, for a smoke run")
    parser.add_argument("--file", type=Path, help="reuse this file instead of writing one")
    args = parser.parse_args()
    samples, steps, hidden = (64, 128, 32) if args.quick else (2048, 256, 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or Path(tmp) / "acts.nc"
        if not path.exists():
            started = time.perf_counter()
            write_file(path, samples, steps, hidden)
            print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
        import seqacts

        with seqacts.open_dataset(path) as ds:
            h_mb = ds["h"].nbytes / 2**20
            shape = dict(ds.sizes)
        print(f"{platform.machine()} cores={os.cpu_count()}; file {path.stat().st_size / 1e6:.0f} "
              f"MB {shape}; h: {h_mb:.0f} MiB")  # fmt: skip
        done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                              text=True)  # fmt: skip
        if done.returncode:
            raise SystemExit(done.stderr)
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        print("\n| step | wall time | peak RSS so far |")
        print("|---|---|---|")
        for name, seconds, rss in rows:
            print(f"| {name} | {seconds:.1f} s | {rss:.0f} MB |")
        total = sum(r[1] for r in rows[1:4])
        print(f"\nopen to first page: {total:.1f} s; peak RSS {rows[-1][2]:.0f} MB for {h_mb:.0f} "
              "MiB of h")  # fmt: skip


if __name__ == "__main__":
    main()
