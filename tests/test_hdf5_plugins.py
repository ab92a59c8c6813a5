"""zstd-compressed files still work after tensorflow was imported (it sets HDF5_PLUGIN_PATH=disable).

Found when the suite ran with keras installed: a process that had imported tensorflow passed the
setting to its children (Dask workers, a killed writer), whose zstd writes then failed with
"NetCDF: Filter error: undefined filter encountered".
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import sys, torch, seqacts
from pathlib import Path
model = torch.nn.GRU(3, 4, batch_first=True)
path = seqacts.extract_to_netcdf(model, [torch.randn(2, 5, 3)], Path(sys.argv[1]),
                                 compression="zstd", progress=False)
with seqacts.open_dataset(path) as ds:
    print(ds.sizes["sample"])
"""


def test_zstd_writes_when_the_parent_disabled_hdf5_plugins(tmp_path: Path) -> None:
    env = {**os.environ, "HDF5_PLUGIN_PATH": "disable"}  # what `import tensorflow` leaves
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "z.nc")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "2"


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
def test_zstd_writes_after_importing_tensorflow(tmp_path: Path) -> None:
    code = "import tensorflow\n" + CHILD
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "z.nc")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2"
