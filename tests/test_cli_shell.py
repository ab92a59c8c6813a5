"""Issue 24's mistakes replayed from a shell: a GRU autoencoder and an LSTM classifier in a
factory file, ``.pt`` weights (one saved from ``nn.DataParallel``), ``.npy``/``.nc`` inputs.

Each test batches several commands into concurrent subprocesses (each pays the torch import
once); the values recorded are compared with the API's in-process recording.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import seqacts
from seqacts.cli_extract import committed, committed_samples

MODELS_PY = """
import os
import time

from torch import nn


class GRUAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.GRU(3, 6, batch_first=True)
        self.dec = nn.GRU(6, 6, batch_first=True)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        if os.environ.get("SLOW_FORWARD"):
            time.sleep(float(os.environ["SLOW_FORWARD"]))
        z, _ = self.enc(x)
        y, _ = self.dec(z)
        return self.out(y)


class LSTMClf(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y[:, -1])


def gru_ae():
    return GRUAE()


def lstm_clf():
    return LSTMClf()
"""

N, T = 48, 12


def _seqacts() -> list[str]:
    script = Path(sys.executable).with_name("seqacts")
    return [str(script)] if script.exists() else [sys.executable, "-m", "seqacts.cli"]


def _start(cwd: Path, cmd: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(_seqacts() + cmd, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _run_all(cwd: Path, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run commands concurrently and collect their results."""
    procs = [_start(cwd, cmd) for cmd in commands]
    results = []
    for proc, cmd in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shell")
    (root / "models.py").write_text(MODELS_PY)
    sys.path.insert(0, str(root))
    try:
        import models

        torch.manual_seed(0)
        ae = models.gru_ae()
        torch.save(ae.state_dict(), root / "ae.pt")
        torch.save(torch.nn.DataParallel(ae).state_dict(), root / "ae_dp.pt")
        torch.save(models.lstm_clf().state_dict(), root / "clf.pt")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("models", None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, T, 3)).astype(np.float32)
    mask = np.zeros((N, T), bool)
    kind = np.array(["normal"] * N, dtype=object)
    for i in range(0, N, 4):
        mask[i, 4:7], kind[i] = True, "spike"
        x[i, 4:7] += 4
    for i in range(2, N, 8):
        mask[i, 6:], kind[i] = True, "shift"
        x[i, 6:] += 2
    xr.Dataset({"x": (("sample", "time", "feature"), x),
                "anomaly_mask": (("sample", "time"), mask),
                "is_anomaly": ("sample", mask.any(1)),
                "anomaly": ("sample", kind.astype(str))}).to_netcdf(root / "inputs.nc")  # fmt: skip
    np.save(root / "x64.npy", x.astype(np.float64))
    (root / "alias.nc").symlink_to(root / "inputs.nc")
    return root


def _expected(root: Path, x: np.ndarray) -> xr.Dataset:
    sys.path.insert(0, str(root))
    try:
        import models

        model = models.gru_ae()
        model.load_state_dict(torch.load(root / "ae.pt", weights_only=True))
        return seqacts.extract(model.eval(), torch.from_numpy(x))
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("models", None)


E = ["extract", "models:gru_ae"]


def test_traps_are_said_in_one_line(project: Path) -> None:
    before = _sha(project / "inputs.nc")
    same, alias, bare, wrapped, nodir, layers, wide = _run_all(
        project,
        [*E, "--weights", "ae.pt", "--input", "inputs.nc", "--out", "inputs.nc", "--overwrite"],
        [*E, "--weights", "ae.pt", "--input", "inputs.nc", "--out", "alias.nc", "--overwrite"],
        [*E, "--input", "inputs.nc", "--out", "bare.nc", "--drop", "anomaly_mask"],
        [*E, "--weights", "ae_dp.pt", "--input", "inputs.nc", "--out", "dp.nc"],
        [*E, "--weights", "ae.pt", "--input", "x64.npy", "--out", "nodir/x.nc"],
        ["extract", "--layers", "enc.l0", "models:gru_ae", "--weights", "ae.pt", "--input",
         "x64.npy", "--out", "layers.nc"],
        ["extract", "models:lstm_clf", "--random-weights", "--input", "x64.npy", "--out",
         "clf.nc"],
    )  # fmt: skip
    for done in (same, alias):
        assert done.returncode == 2 and "is the --input file" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert _sha(project / "inputs.nc") == before
    assert bare.returncode == 0 and "warning: no --weights" in bare.stderr, bare.stderr
    assert wrapped.returncode == 0 and "starts with 'module.'" in wrapped.stderr, wrapped.stderr
    assert "no --weights" not in wrapped.stderr
    assert nodir.returncode == 2 and "does not exist" in nodir.stderr
    assert not (project / "nodir").exists()
    assert layers.returncode == 0 and "converted to float32" in layers.stderr, layers.stderr
    assert wide.returncode == 0 and "no --weights" not in wide.stderr, wide.stderr
    with xr.open_dataset(project / "inputs.nc") as given:
        x, mask = given["x"].values, given["anomaly_mask"].values
    expected = _expected(project, x)
    with seqacts.open_dataset(project / "dp.nc") as dp, \
            seqacts.open_dataset(project / "bare.nc") as b, \
            seqacts.open_dataset(project / "layers.nc") as lay:  # fmt: skip
        np.testing.assert_allclose(dp["h"].values, expected["h"].values, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(dp["anomaly_mask"].values, mask)  # kept, as bool
        np.testing.assert_array_equal(dp["input"].values, x)
        assert dp["is_anomaly"].dims == ("sample",) and "anomaly" in dp.coords
        assert "anomaly_mask" not in b and "input" in b
        assert list(lay["layer"].values) == ["enc.l0"]
    pipe = subprocess.run(["bash", "-c", "set -o pipefail; " + " ".join(_seqacts())
                           + " info dp.nc | head -1"], cwd=project, capture_output=True,
                          text=True)  # fmt: skip
    assert pipe.stderr == "" and pipe.stdout.startswith("dp.nc:"), pipe.stderr
    nolabels, numeric, score, mask, noscore = _run_all(
        project,
        ["report", "layers.nc", "--out", "r1"],
        ["report", "dp.nc", "--out", "r2", "--group", "input"],
        ["report", "dp.nc", "--out", "r3", "--score", "nosuch"],
        ["report", "dp.nc", "--out", "r4", "--mask", "input"],
        ["report", "dp.nc", "--out", "r5", "--model", "models:gru_ae"],
    )
    assert nolabels.returncode == 0 and "no boolean or categorical labels" in nolabels.stderr
    assert numeric.returncode == 2 and "sample alone" in numeric.stderr
    assert score.returncode == 2 and "no variable 'nosuch'" in score.stderr
    assert mask.returncode == 2 and "--mask" in mask.stderr
    assert noscore.returncode == 2 and "--score recon" in noscore.stderr
    for done in (numeric, score, mask, noscore):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_full_report_from_the_shell_leads_with_a_summary(project: Path) -> None:
    (rec,) = _run_all(project, [*E, "--weights", "ae.pt", "--input", "inputs.nc", "--out",
                                "acts.nc"])  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    (rep,) = _run_all(project, ["report", "acts.nc", "--out", "rep", "--model", "models:gru_ae",
                                "--weights", "ae.pt", "--score", "recon"])  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    page = (project / "rep" / "report.html").read_text()
    assert page.index("Summary") < page.index("Contents") < page.index("Anomaly scores per kind")
    assert "dashed boxes: anomaly_mask" in page  # the kept mask localizes
    assert (project / "rep" / "ablation.nc").exists() and "Scanned: the top" in page
    console = rep.stdout.splitlines()
    assert console[0].startswith("summary (each kind against normal)")
    kinds = [line.strip().split(" (")[0] for line in console if line.startswith("  ") and
             not line.startswith("    ")]  # fmt: skip
    assert kinds == ["shift", "spike"]
    summary = page[page.index("Summary"):page.index("Contents")]
    assert summary.index("shift") < summary.index("spike")
    for line in console:
        if "best score" in line:
            assert line.split(": ", 1)[1] in summary  # the same rows in the same order
    assert page.count("final-state distance enc.l0") >= 1


def _wait_committed(path_of: Callable[[], Path], proc: subprocess.Popen, samples: int) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        path = path_of()
        done = committed_samples(path) if path.exists() else None
        if done is not None and done >= samples:
            return path
        time.sleep(0.2)
    raise AssertionError("the run committed nothing in 120 s")


@pytest.mark.slow
def test_interrupted_and_killed_runs_are_resumed_never_left(project: Path) -> None:
    cmd = [*E, "--weights", "ae.pt", "--input", "inputs.nc", "--batch-size", "4"]
    run = _start(project, [*cmd, "--out", "s.nc"], SLOW_FORWARD="3")
    _wait_committed(lambda: project / "s.nc", run, 8)
    (busy,) = _run_all(project, ["info", "s.nc"])
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "--resume to finish" in err, err
    assert busy.returncode == 2 and f"being written by pid {run.pid}" in busy.stderr, busy.stderr
    assert "samples committed" in busy.stderr
    kept = committed(project / "s.nc")
    assert kept is not None and 8 <= kept[0] < N and not kept[1]
    (again,) = _run_all(project, [*cmd, "--out", "s.nc"])
    assert again.returncode == 2 and "pass --resume" in again.stderr
    (resumed,) = _run_all(project, [*cmd, "--out", "s.nc", "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    with xr.open_dataset(project / "inputs.nc") as given:
        expected = _expected(project, given["x"].values)
    with seqacts.open_dataset(project / "s.nc") as ds:
        np.testing.assert_allclose(ds["h"].values, expected["h"].values, rtol=1e-6, atol=1e-7)
        assert "anomaly_mask" in ds
    before = _sha(project / "s.nc")
    run = _start(project, [*cmd, "--out", "s.nc", "--overwrite"], SLOW_FORWARD="1")
    temp = project / f".s.nc.tmp-{run.pid}"
    _wait_committed(lambda: temp, run, 8)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    assert _sha(project / "s.nc") == before and temp.exists()
    orphan = project / ".o.nc.tmp-999999999"
    orphan.write_bytes(temp.read_bytes())
    (project / "o.nc").write_bytes((project / "s.nc").read_bytes())
    finished, removed = _run_all(project, [*cmd, "--out", "s.nc", "--resume"],
                                 [*cmd, "--out", "o.nc", "--overwrite"])  # fmt: skip
    assert finished.returncode == 0 and f"resuming {temp.name}" in finished.stderr, finished.stderr
    assert removed.returncode == 0 and f"removed {orphan.name}" in removed.stderr, removed.stderr
    assert not list(project.glob(".*s.nc*")) and not list(project.glob(".*o.nc*"))
    with seqacts.open_dataset(project / "s.nc") as ds:
        np.testing.assert_allclose(ds["h"].values, expected["h"].values, rtol=1e-6, atol=1e-7)
