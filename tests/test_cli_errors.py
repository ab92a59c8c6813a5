"""Every mistake on the command line: one line on stderr, the right exit status, nothing written.

The table runs ``seqacts.cli.main`` in-process (torch is imported once); a few real
subprocesses check that argument and file errors come before torch is imported.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import seqacts
from seqacts.cli import main

MODEL_PY = """
from torch import nn


class Net(nn.Module):
    def __init__(self, batch_first=True):
        super().__init__()
        self.rnn = nn.GRU(3, 8, batch_first=batch_first)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


class Exploding(Net):
    def forward(self, x):
        raise RuntimeError("shapes do not match")


def make():
    return Net()


def other():
    return nn.Sequential(nn.LSTM(3, 5, batch_first=True))


def broken():
    raise RuntimeError("no GPU found")


def exploding():
    return Exploding()


def not_module():
    return 3


NOT_CALLABLE = 3
"""


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    (root / "mymodel.py").write_text(MODEL_PY)
    (root / "boom.py").write_text("raise RuntimeError('import-time failure')\n")
    sys.path.insert(0, str(root))
    try:
        import mymodel

        torch.manual_seed(0)
        torch.save(mymodel.make().state_dict(), root / "w.pt")
        torch.save(mymodel.other().state_dict(), root / "other.pt")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("mymodel", None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5, 3)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "x4.npy", x[None])
    np.save(root / "flat.npy", x[0])
    np.save(root / "feat4.npy", rng.normal(size=(12, 5, 4)).astype(np.float32))
    np.save(root / "ints.npy", (x * 10).astype(np.int64))
    np.save(root / "empty.npy", x[:0])
    np.save(root / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(root / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    nan = x.copy()
    nan[2, 1, 0] = np.nan
    np.save(root / "nan.npy", nan)
    (root / "corrupt.npy").write_text("not numpy\n")
    torch.save({"a": torch.zeros(2, 5, 3), "b": torch.zeros(2, 5, 3)}, root / "two.pt")
    torch.save({"model": mymodel_like()}, root / "object.pt")
    (root / "evil.pt").write_bytes(pickle.dumps(Evil()))
    (root / "notes.txt").write_text("x\n")
    (root / "sub").mkdir()
    xr.Dataset({"input": (("sample", "time", "feature"), x)}).to_netcdf(root / "x.nc")
    pd.DataFrame({"is_anomaly": np.arange(11) % 2 == 0}).to_csv(root / "short.csv", index=False)
    pd.DataFrame({"h": np.arange(12)}).to_csv(root / "reserved.csv", index=False)
    np.save(root / "labels2d.npy", np.zeros((12, 2)))
    ds = seqacts.extract(mymodel_like(), torch.from_numpy(x))
    ds = ds.assign_coords(
        is_anomaly=("sample", np.arange(12) % 3 == 0),
        constant=("sample", np.zeros(12, bool)),
        score=("sample", np.arange(12.0)),
    )
    ds.to_netcdf(root / "acts.nc")
    (root / "existing.nc").write_bytes(b"keep me")
    (root / "afile").write_text("keep me too")
    return root


def mymodel_like() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.GRU(3, 8, batch_first=True))


E = ["extract", "mymodel:make"]
X = ["--input", "x.npy", "--out", "new.nc"]
# (arguments, exit status, text the one line must contain)
CASES = [
    # MODEL and the user's own code
    (["extract", "mymodel", *X], 2, "package.module:factory"),
    (["extract", "nomodule:make", *X], 2, "cannot import 'nomodule'"),
    (["extract", "mymodel:nope", *X], 2, "no attribute 'nope'"),
    (["extract", "mymodel:NOT_CALLABLE", *X], 2, "not callable"),
    (["extract", "mymodel:not_module", *X], 2, "not a torch.nn.Module"),
    (["extract", "mymodel:broken", *X], 1, "MODEL: broken() raised RuntimeError: no GPU found"),
    (["extract", "boom:make", *X], 1, "MODEL: importing boom raised RuntimeError"),
    (["extract", "mymodel:exploding", *X], 1, "MODEL: forward of Exploding"),
    # --weights
    (["extract", "mymodel:other", "--weights", "w.pt", *X], 2, "does not fit the model"),
    ([*E, "--weights", "other.pt", *X], 2, "does not fit the model"),
    ([*E, "--weights", "x.npy", *X], 2, "weights_only=True"),
    ([*E, "--weights", "evil.pt", *X], 2, "cannot load evil.pt"),
    ([*E, "--weights", "gone.pt", *X], 2, "no such file 'gone.pt'"),
    ([*E, "--weights", "sub", *X], 2, "'sub' is a directory"),
    # --input
    ([*E, "--input", "object.pt", "--out", "new.nc"], 2, "cannot load object.pt as tensors"),
    ([*E, "--input", "evil.pt", "--out", "new.nc"], 2, "cannot load evil.pt as tensors"),
    ([*E, "--input", "objects.npy", "--out", "new.nc"], 2, "holds Python objects"),
    ([*E, "--input", "strings.npy", "--out", "new.nc"], 2, "not numbers"),
    ([*E, "--input", "ints.npy", "--out", "new.nc"], 2, "holds int64 values but the model's"),
    ([*E, "--input", "empty.npy", "--out", "new.nc"], 2, "is empty (shape (0, 5, 3))"),
    ([*E, "--input", "x4.npy", "--out", "new.nc"], 2, "expected 3 axes"),
    ([*E, "--input", "flat.npy", "--out", "new.nc"], 2, "x[None]"),
    ([*E, "--input", "feat4.npy", "--out", "new.nc"], 2, "expects input_size=3"),
    ([*E, "--input", "nan.npy", "--out", "new.nc"], 2, "1 NaN or infinite values"),
    ([*E, "--input", "corrupt.npy", "--out", "new.nc"], 2, "cannot read corrupt.npy"),
    ([*E, "--input", "sub", "--out", "new.nc"], 2, "'sub' is a directory"),
    ([*E, "--input", "gone.npy", "--out", "new.nc"], 2, "no such file 'gone.npy'"),
    ([*E, "--input", "notes.txt", "--out", "new.nc"], 2, "expected a .npy, .pt or .nc file"),
    ([*E, "--input", "two.pt", "--out", "new.nc"], 2, "pick one with --variable"),
    ([*E, "--input", "x.nc", "--variable", "nope", "--out", "new.nc"], 2, "with --variable"),
    ([*E, *X, "--time-first"], 2, "pass --batch-first"),
    ([*E, *X, "--layout", "sample,time"], 2, "--layout: expected the axes"),
    ([*E, *X, "--layout", "sample,feature,time"], 2, "expects input_size=3"),
    ([*E, *X, "--batch-size", "0"], 2, "positive integer"),
    ([*E, *X, "--compression", "lz4"], 2, "invalid choice: 'lz4'"),
    ([*E, *X, "--pack", "int8"], 2, "invalid choice: 'int8'"),
    ([*E, "--input", "x.npy"], 2, "the following arguments are required: --out"),
    # --out
    ([*E, "--input", "x.npy", "--out", "sub"], 2, "'sub' is a directory"),
    ([*E, "--input", "x.npy", "--out", "existing.nc"], 2, "pass --overwrite"),
    ([*E, "--input", "x.npy", "--out", "afile/acts.nc"], 2, "afile is a file"),
    # --coords
    ([*E, *X, "--coords", "short.csv"], 2, "has 11 values but --input has 12 samples"),
    ([*E, *X, "--coords", "reserved.csv"], 2, "'h' in reserved.csv cannot name a label"),
    ([*E, *X, "--coords", "labels2d.npy"], 2, "has shape (12, 2)"),
    ([*E, *X, "--coords", "gone.csv"], 2, "no such file 'gone.csv'"),
    ([*E, *X, "--coords", "notes.txt"], 2, "expected a .csv, .npy or .nc file"),
    # info
    (["info", "missing.nc"], 2, "no such file 'missing.nc'"),
    (["info", "x.nc"], 2, "not a seqacts dataset"),
    (["info", "x.npy"], 2, "cannot read x.npy"),
    (["info", "sub"], 2, "'sub' is a directory without part-*.nc shards"),
    (["info"], 2, "the following arguments are required: FILE.nc"),
    # report
    (["report", "acts.nc", "--out", "rep", "--group", "h"], 2, "'h' has dims"),
    (["report", "acts.nc", "--out", "rep", "--group", "nope"], 2, "labels along sample"),
    (["report", "acts.nc", "--out", "rep", "--group", "constant"], 2, "has a single value"),
    (["report", "acts.nc", "--out", "rep", "--group", "score"], 2, "fewer than 2 samples"),
    (["report", "acts.nc", "--out", "afile"], 2, "'afile' is a file"),
    (["report", "acts.nc", "--out", "rep", "--reference", "gone.nc"], 2, "no such file"),
    (["report", "sub", "--out", "rep"], 2, "without part-*.nc shards"),
    # demo and the command itself
    (["demo", "--out", "afile"], 2, "'afile' is a file"),
    (["nonsense"], 2, "invalid choice: 'nonsense'"),
]  # fmt: skip


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` with its size and content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def in_project(project: Path, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield project
    for name in ("mymodel", "boom"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("argv, status, text", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_mistake_is_one_line_and_writes_nothing(in_project, capsys, argv, status, text) -> None:
    before = _snapshot(in_project)
    code = _run(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == status, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert text in lines[0], err
    assert lines[0].startswith("seqacts"), err
    for unsafe in ("weights_only=False", "model.to(", "torch.int64)"):
        assert unsafe not in err
    assert _snapshot(in_project) == before  # nothing written, existing files kept
    assert not (in_project / "pwned.txt").exists()


def _run(argv: list[str]) -> int | str | None:
    """``main(argv)``'s exit status, also when argparse exits."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_table_covers_at_least_thirty_mistakes() -> None:
    assert len(CASES) >= 30


def _seqacts() -> list[str]:
    script = Path(sys.executable).with_name("seqacts")
    return [str(script)] if script.exists() else [sys.executable, "-m", "seqacts.cli"]


@pytest.mark.parametrize(
    "argv",
    [
        ["extract", "mymodel:make", "--input", "empty.npy", "--out", "new.nc"],
        ["extract", "mymodel:make", "--input", "x.npy", "--out", "sub"],
        ["info", "sub"],
        ["extract", "mymodel:make", "--input", "x.npy", "--compression", "lz4", "--out", "a.nc"],
    ],
    ids=["empty input", "out is a directory", "info directory", "bad choice"],
)
def test_argument_and_file_errors_come_before_torch(project: Path, argv: list[str]) -> None:
    """A real process: one line, status 2, under a second of CPU, torch never imported."""
    code = (
        "import sys; from seqacts.cli import main; rc = main(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(rc)"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=project, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout.strip() in ("False", ""), "torch was imported"
    # ~0.65 s of CPU here, mostly importing xarray (torch alone takes ~3 s); the margin is for
    # a machine shared with other jobs
    assert cpu < 1.5, f"{cpu:.2f} s of CPU"
    assert wall < 10.0  # wall time depends on the machine's load; the CPU bound is the check


def test_help_and_version_do_not_import_torch(project: Path) -> None:
    code = (
        "import sys; from seqacts.cli import main\n"
        "for argv in (['--help'], ['--version'], ['extract', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False")
    assert f"seqacts {seqacts.__version__}" in done.stdout
    assert "--coords" in done.stdout and "--layout" in done.stdout


def test_user_code_error_in_a_terminal(project: Path) -> None:
    """The console script: the factory's error says where it came from, exit status 1."""
    done = subprocess.run(_seqacts() + ["extract", "mymodel:broken", "--input", "x.npy", "--out",
                                        "new.nc"], cwd=project, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "seqacts extract: error: MODEL: broken() raised RuntimeError: no GPU found (rerun with "
        "--debug for the traceback)"
    )
    assert not (project / "new.nc").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_unwritable_destination_is_refused_before_any_work(in_project, capsys) -> None:
    ro = in_project / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    try:
        assert _run([*E, "--input", "x.npy", "--out", "ro/acts.nc"]) == 2
        assert "permission denied" in capsys.readouterr().err
        assert _run(["report", "acts.nc", "--out", "ro/rep"]) == 2
        assert not any(ro.iterdir())
    finally:
        ro.chmod(0o755)


def test_destination_without_write_permission_is_refused(in_project, capsys, monkeypatch) -> None:
    """As a user without write permission sees it (os.access says no), also when run as root."""
    import seqacts.cli_checks

    monkeypatch.setattr(seqacts.cli_checks.os, "access", lambda path, mode: False)
    before = _snapshot(in_project)
    assert _run([*E, "--input", "x.npy", "--out", "sub/acts.nc"]) == 2
    assert _run(["report", "acts.nc", "--out", "sub"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("permission denied" in line for line in err), err
    assert _snapshot(in_project) == before
