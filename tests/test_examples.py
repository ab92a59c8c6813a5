"""Every script in examples/ runs as a user runs it and says what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example trains a small model: ~1 minute together

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ("anomaly_debugging", "seq2seq_cells", "xarray_analysis")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Start all examples at once (each is mostly single-threaded), then collect them."""
    root = tmp_path_factory.mktemp("examples")
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), "--out", str(root / name)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in NAMES
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        results[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                         root / name)  # fmt: skip
    return results


def test_anomaly_debugging_separates_anomalies(runs) -> None:
    done, out = runs["anomaly_debugging"]
    assert done.returncode == 0, done.stderr
    auc = float(re.search(r"encoder\.l0: (\d\.\d+)", done.stdout).group(1))
    assert auc > 0.85, done.stdout
    spikes = float(re.search(r"separates spikes .*AUC (\d\.\d+)", done.stdout).group(1))
    assert spikes > 0.9
    step = dict(re.findall(r"  (spike|level_shift) +(\d\.\d+) \(", done.stdout))
    assert float(step["spike"]) > 0.95 and float(step["level_shift"]) > 0.95, done.stdout
    assert "(d=+" in done.stdout and "large)" in done.stdout
    assert (out / "report.html").exists() and (out / "worst_window.png").exists()


def test_seq2seq_cells_records_the_decoder_loop(runs) -> None:
    done, out = runs["seq2seq_cells"]
    assert done.returncode == 0, done.stderr
    assert "['encoder.l0', 'decoder']" in done.stdout
    assert "max difference 0.0e+00" in done.stdout
    assert "NaN: True" in done.stdout
    assert {p.name for p in out.glob("*.png")} == {
        "encoder.png", "decoder_forget.png", "saturation.png"
    }  # fmt: skip


def test_xarray_analysis_selects_units_by_effect_size(runs) -> None:
    done, out = runs["xarray_analysis"]
    assert done.returncode == 0, done.stderr
    assert "selected: {'sample': 6, 'rank': 4, 'time': 1440}" in done.stdout
    assert "2024-05-01 15:00:00" in done.stdout  # hourly resampling kept datetime labels
    assert (out / "top_units.png").exists() and (out / "hourly_activity.png").exists()


@pytest.mark.slow
def test_interventions_example_ablates_and_scans(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "interventions.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "encoder units that respond most to spikes" in done.stdout
    changes = re.findall(r"ablating .* change: normal +(-?\d\.\d+) +spike +(-?\d\.\d+)", done.stdout)
    assert len(changes) == 2
    assert "ablation scan: units whose ablation raises" in done.stdout
    assert len(re.findall(r"^  u\d+ +change:", done.stdout, flags=re.M)) == 3

