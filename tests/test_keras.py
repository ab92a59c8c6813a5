"""The Keras front end on each installed backend, and what holds without keras imported.

Keras picks its backend once, at import, from ``KERAS_BACKEND``: each backend's tests
(``tests/keras_backend/keras_models.py``) run in a pytest process of their own, started here;
a backend whose package is missing is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}


def _missing(package: str) -> bool:
    return importlib.util.find_spec(package) is None


@pytest.mark.skipif(_missing("keras"), reason="keras is not installed (pip install seqacts[keras])")
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_keras_backend(backend: str) -> None:
    if _missing(BACKENDS[backend]):
        pytest.skip(f"the {backend} backend is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "SEQACTS_KERAS_CLI": "1" if backend == _first_backend() else "0"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-s",
         str(ROOT / "tests" / "keras_backend" / "keras_models.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def _first_backend() -> str:
    return next((b for b, p in BACKENDS.items() if not _missing(p)), "")


def test_import_seqacts_does_not_import_keras() -> None:
    code = ("import sys, seqacts; seqacts.layers; import seqacts.capture.recorder, "
            "seqacts.interventions.context; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
