"""Cost of recording a Keras 3 model against ``model.predict``, on each installed backend.

2-layer LSTM(64), batch 32, T=200, 16 input features, CPU float32. Keras fixes its backend at
import, so each backend runs in a child process of this script (``--backend``); the parent
prints one table. Rows: ``model.predict`` (compiled: tf.function / jax.jit / torch), the eager
call ``model(x)``, ``seqacts.extract`` and ``seqacts.extract(..., internals=True)``; ratios
are to ``model.predict`` in the same process. Asserts nothing about time; ``--quick`` shrinks
the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_together  # noqa: E402

BACKENDS = ("tensorflow", "torch", "jax")


def child(quick: bool, repeats: int) -> dict[str, float]:
    import keras
    import numpy as np

    import seqacts

    batch, steps, units, features = (4, 20, 8, 3) if quick else (32, 200, 64, 16)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((steps, features)),
                              keras.layers.LSTM(units, return_sequences=True),
                              keras.layers.LSTM(units, return_sequences=True)])
    x = np.random.default_rng(0).normal(size=(batch, steps, features)).astype("float32")
    times = timed_together({
        "model.predict": lambda: model.predict(x, batch_size=batch, verbose=0),
        "model(x) eager": lambda: model(x, training=False),
        "seqacts.extract": lambda: seqacts.extract(model, x),
        "extract, internals=True": lambda: seqacts.extract(model, x, internals=True),
    }, repeats=repeats)
    deviation = seqacts.extract(model, x)["keras_deviation"].values
    return {**times, "deviation": float(deviation.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=BACKENDS, help="(internal) run one backend")
    args = parser.parse_args()
    if args.backend:
        print(json.dumps(child(args.quick, args.repeats)))
        return
    sizes = "batch 4, T=20, LSTM(8) x2" if args.quick else "batch 32, T=200, LSTM(64) x2"
    print(f"# Keras: recording vs model.predict ({sizes}, CPU float32)\n# {machine()}")
    rows: dict[str, dict[str, float]] = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None or importlib.util.find_spec("keras") is None:
            print(f"# {backend}: not installed, skipped")
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, __file__, "--backend", backend, "--repeats", str(args.repeats)]
        done = subprocess.run(cmd + (["--quick"] if args.quick else []), env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
        rows[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    print("\n| backend | model.predict | model(x) eager | seqacts.extract | extract, internals=True "
          "| extract / eager | max deviation |")
    print("|---|---|---|---|---|---|---|")
    for backend, t in rows.items():
        base = t["model.predict"]
        cells = [f"{t[k] * 1e3:.1f} ms, {t[k] / base:.2f}x" for k in
                 ("model.predict", "model(x) eager", "seqacts.extract", "extract, internals=True")]
        eager = t["seqacts.extract"] / t["model(x) eager"]
        print(f"| {backend} | {' | '.join(cells)} | {eager:.2f}x | {t['deviation']:.1e} |")


if __name__ == "__main__":
    main()
