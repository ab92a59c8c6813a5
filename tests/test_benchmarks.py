"""The benchmarks still run (tiny sizes): each prints its ratio table. Times are not asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["bench_capture.py", "bench_internals.py"])
def test_benchmark_prints_ratios(script):
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "plain forward" in out and "extract()" in out
    ratios = [float(r) for r in re.findall(r"(\d+\.\d+)x", out)]
    assert ratios and all(r > 0 for r in ratios)


def test_analysis_memory_benchmark_prints_its_table():
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_analysis_memory.py"), "--quick"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    for name in ("summary", "dead_units", "report"):
        assert re.search(rf"\| {name} \| \d+ MB, [\d.]+ s \|", out), out
