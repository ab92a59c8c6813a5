"""Streaming under faults: disk full, file-size limit, racing writers, stale locks, other batches
on resume, corrupted and truncated files, bad destinations, empty batches.

Each fault is produced for real where the machine allows it (a small tmpfs, ``RLIMIT_FSIZE`` in a
subprocess, writers in subprocesses); files are read back from a fresh process, never from the
writer's own caches.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import seqacts
from seqacts import (
    CorruptFileError,
    DestinationError,
    OutputExistsError,
    StreamBusyError,
    StreamMismatchError,
    StreamWriteError,
    extract,
    extract_to_netcdf,
    open_dataset,
    verify,
)
from seqacts.cli import main
from seqacts.io import destination

HERE = Path(__file__).parent


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.LSTM(3, 16, num_layers=2, batch_first=True).eval()


def inputs(n: int = 8, size: int = 32, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 20, 3, generator=g) for _ in range(n)]


def expected(batches: list[torch.Tensor]) -> xr.Dataset:
    return extract(model(), torch.cat(batches)).drop_attrs()


def read_fresh(path: Path, copy: Path) -> xr.Dataset:
    """What a fresh process reads from ``path`` (no cache of the writer's), as a dataset."""
    script = ("import sys, warnings; warnings.simplefilter('ignore'); import seqacts; "
              "seqacts.open_dataset(sys.argv[1]).load().drop_attrs().to_netcdf(sys.argv[2])")
    subprocess.run([sys.executable, "-c", script, str(path), str(copy)], check=True, timeout=120)
    with xr.open_dataset(copy) as ds:
        return ds.load()


def same(got: xr.Dataset, want: xr.Dataset) -> None:
    np.testing.assert_array_equal(got["h"].values, want["h"].values)
    np.testing.assert_array_equal(got["c_n"].values, want["c_n"].values)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 700 kB tmpfs (a real full disk); skipped where mounting is not allowed."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
import seqacts
from test_faults import model, inputs

def slow():
    for k, b in enumerate(inputs(6, seed=int(sys.argv[2]))):
        yield b
        print("yielded", k, flush=True)
        time.sleep(float(sys.argv[3]))
try:
    seqacts.extract_to_netcdf(model(), slow(), sys.argv[1], progress=False)
    print("ok", flush=True)
except (seqacts.StreamBusyError, FileExistsError) as err:
    print(type(err).__name__, err, flush=True)
"""


def writer(path: Path, seed: int, pause: float) -> subprocess.Popen:
    script = textwrap.dedent(WRITER).format(tests=str(HERE))
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}  # seqacts' lock must do the work
    return subprocess.Popen([sys.executable, "-c", script, str(path), str(seed), str(pause)],
                            stdout=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_second_writer_resume_and_reader_are_told_who_writes(tmp_path: Path) -> None:
    path = tmp_path / "busy.nc"
    first = writer(path, seed=1, pause=0.5)
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("yielded 1"):
            break
    with pytest.raises(StreamBusyError, match=rf"pid {first.pid} on host {socket.gethostname()}"):
        extract_to_netcdf(model(), inputs(6, seed=2), path, progress=False)
    with pytest.raises(StreamBusyError, match=rf"pid {first.pid}"):
        extract_to_netcdf(model(), inputs(6, seed=2), path, resume=True, progress=False)
    with pytest.raises(StreamBusyError, match=rf"pid {first.pid}"):
        extract_to_netcdf(model(), inputs(6, seed=2), path, overwrite=True, progress=False)
    try:  # a reader sees the committed prefix, or is told who writes: never an HDF error
        with open_dataset(path) as ds:
            assert ds.sizes["sample"] % 32 == 0
    except StreamBusyError as err:
        assert f"pid {first.pid}" in str(err)
    assert first.stdout.read().strip().endswith("ok")
    assert first.wait(timeout=60) == 0
    same(read_fresh(path, tmp_path / "copy.nc"), expected(inputs(6, seed=1)))


@pytest.mark.slow
def test_two_writers_racing_for_a_new_path_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "race.nc"
    racers = [writer(path, seed=s, pause=0.05) for s in (1, 2)]
    outs = [r.communicate(timeout=120)[0] for r in racers]
    won = [k for k, out in enumerate(outs) if out.strip().endswith("ok")]
    assert len(won) == 1, outs
    lost = outs[1 - won[0]].strip().splitlines()[-1]
    assert lost.startswith(("StreamBusyError", "FileExistsError")), outs
    same(read_fresh(path, tmp_path / "copy.nc"), expected(inputs(6, seed=1 + won[0])))


def test_stale_lock_is_taken_over_live_foreign_one_is_not(tmp_path: Path) -> None:
    path, lock = tmp_path / "s.nc", tmp_path / ".s.nc.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}", "started": 0}}')
    extract_to_netcdf(model(), inputs(2), path, progress=False)  # a killed writer's lock
    assert not lock.exists()
    lock.write_text('{"pid": 1, "host": "elsewhere", "started": 0}')
    with pytest.raises(StreamBusyError, match="pid 1 on host elsewhere.*remove"):
        extract_to_netcdf(model(), inputs(2), path, resume=True, progress=False)
    with pytest.raises(StreamBusyError, match="being written by pid 1 on host elsewhere"):
        verify(path)
    lock.unlink()


def _interrupted(batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield from batches
    raise KeyboardInterrupt


def test_resume_refuses_rebatched_or_other_inputs(tmp_path: Path) -> None:
    batches, path = inputs(4, 16), tmp_path / "r.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(model(), _interrupted(batches[:2]), path, progress=False)
    x = torch.cat(batches)
    for size in (8, 32):  # the same samples, other batch sizes
        with pytest.raises(StreamMismatchError, match=rf"batch 0: .*shapes \[\[16, 20, 3\]\] "
                                                      rf"\(16 samples\), this call's has "
                                                      rf"\[\[{size}, 20, 3\]\]"):
            extract_to_netcdf(model(), list(x.split(size)), path, resume=True, progress=False)
    other = [batches[0], batches[1] + 1, *batches[2:]]
    with pytest.raises(StreamMismatchError, match="batch 1: same input shapes .* other values"):
        extract_to_netcdf(model(), other, path, resume=True, progress=False)
    extract_to_netcdf(model(), batches, path, resume=True, progress=False)
    with pytest.raises(StreamMismatchError, match="already complete with 4 batches.*batch 4"):
        extract_to_netcdf(model(), batches * 3, path, resume=True, progress=False)
    with open_dataset(path) as ds:
        same(ds.load(), expected(batches))


def _flip(path: Path, at: int, n: int = 4096) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        data = f.read(n)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in data))


FLIPPED = """
import re, sys
import pytest
from seqacts import CorruptFileError, open_dataset, verify
from seqacts.cli import main
path = sys.argv[1]
with open_dataset(path) as ds:
    try:
        ds.load()
    except CorruptFileError as err:
        assert re.search(r"variable 'h', samples \\d+-\\d+: a chunk fails its checksum", str(err)), err
    else:
        raise AssertionError("a corrupted chunk was read without an error")
report = verify(path)
assert not report.ok and any("'h', samples" in p for p in report.problems), report.problems
assert main(["info", "--verify", path]) == 1
print("CHECKED")
"""


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_flipped_bytes_raise_with_variable_and_samples(tmp_path: Path, compression: str | None) -> None:
    path = extract_to_netcdf(model(), inputs(), tmp_path / "c.nc", compression=compression,
                             progress=False)
    _flip(path, path.stat().st_size // 2)
    # In a fresh process: HDF5 itself can crash (SIGSEGV) on some damaged metadata, and that
    # must not take the test session down with it.
    done = subprocess.run([sys.executable, "-c", FLIPPED, str(path)], capture_output=True,
                          text=True, timeout=300)
    if done.returncode < 0:
        pytest.skip(f"HDF5 crashed (signal {-done.returncode}) reading the damaged file")
    assert done.returncode == 0 and "PROBLEMS FOUND" in done.stdout and "CHECKED" in done.stdout, (
        done.stdout + done.stderr)


DAMAGED_ATTRIBUTES = """
import sys
import pytest
from seqacts import CorruptFileError, open_dataset, verify
from seqacts.cli import main
from tests.test_faults import inputs, model
from seqacts import extract_to_netcdf
path = sys.argv[1]
for call in (lambda: open_dataset(path),
             lambda: extract_to_netcdf(model(), inputs(), path, resume=True, progress=False)):
    with pytest.raises(CorruptFileError, match="metadata .* is damaged .*Recreate it"):
        call()
report = verify(path)
assert not report.ok and "global attributes are damaged" in report.problems[0], report.problems
assert main(["info", "--verify", path]) == 1
print("CHECKED")
"""


def test_damaged_attributes_are_named_not_raised_as_attribute_errors(tmp_path: Path) -> None:
    path = extract_to_netcdf(model(), inputs(), tmp_path / "a.nc", progress=False)
    data = path.read_bytes()
    # the fractal-heap block holding the global attributes (signature "FHDB")
    at = data.find(b"FHDB", data.find(b"seqacts_stream_options") - 512)
    assert at > 0
    _flip(path, at, 16)
    done = subprocess.run([sys.executable, "-c", DAMAGED_ATTRIBUTES, str(path)],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent.parent)
    if done.returncode < 0:
        pytest.skip(f"HDF5 crashed (signal {-done.returncode}) reading the damaged file")
    assert done.returncode == 0 and "CHECKED" in done.stdout, done.stdout + done.stderr


def test_resume_refuses_a_corrupted_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "z.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(model(), _interrupted(inputs(6)), path, compression="zlib",
                          progress=False)
    _flip(path, path.stat().st_size // 2)
    with pytest.raises(CorruptFileError, match="no longer read back.*'h'"):
        extract_to_netcdf(model(), inputs(), path, compression="zlib", resume=True,
                          progress=False)


def test_truncated_and_broken_header_have_their_own_messages(tmp_path: Path) -> None:
    path = extract_to_netcdf(model(), inputs(2), tmp_path / "t.nc", progress=False)
    assert verify(path).ok
    assert main(["info", "--verify", str(path)]) == 0
    cut = tmp_path / "cut.nc"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="truncated: its header says") as info:
        open_dataset(cut)
    assert "being written" not in str(info.value)
    assert "truncated" in verify(cut).problems[0]
    broken = tmp_path / "broken.nc"
    broken.write_bytes(b"\0" * 8 + path.read_bytes()[8:])
    with pytest.raises(CorruptFileError, match="broken header"):
        extract_to_netcdf(model(), inputs(2), broken, resume=True, progress=False)


def test_destination_checked_before_any_forward(tmp_path: Path) -> None:
    net, calls = model(), []
    net.register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(DestinationError, match="does not exist; create it") as info:
        extract_to_netcdf(net, inputs(2), tmp_path / "missing" / "a.nc", progress=False)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOENT
    with pytest.raises(DestinationError, match="is a directory") as info:
        extract_to_netcdf(net, inputs(2), tmp_path, overwrite=True, progress=False)
    assert info.value.errno == errno.EISDIR
    readonly = tmp_path / "ro"
    readonly.mkdir()
    mounted = not subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                                  str(readonly)], capture_output=True).returncode
    if not mounted and os.geteuid() != 0:
        readonly.chmod(0o500)
    try:
        if mounted or os.geteuid() != 0:
            with pytest.raises(DestinationError, match="not writable|cannot create files"):
                extract_to_netcdf(net, inputs(2), readonly / "a.nc", progress=False)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(readonly)], check=False)
    assert calls == []


def test_zero_sample_batches_are_logged_and_skipped(tmp_path: Path) -> None:
    empty = torch.zeros(0, 20, 3)
    batches = [empty, *inputs(2, 8), empty, *inputs(1, 8, seed=3)]
    path = tmp_path / "e.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(model(), _interrupted(batches[:4]), path, progress=False)
    extract_to_netcdf(model(), batches, path, resume=True, progress=False)
    with open_dataset(path) as ds:
        assert ds.attrs["seqacts_stream_batches"] == 5
        same(ds.load(), expected([b for b in batches if len(b)]))
    none = extract_to_netcdf(model(), [empty, empty], tmp_path / "none.nc", progress=False)
    with open_dataset(none) as ds:  # only empty batches: a file of 0 samples, every variable
        assert ds.attrs["seqacts_stream_batches"] == 2
        same(ds.load(), seqacts.extract(model(), empty))
    with pytest.raises(ValueError, match="yielded no batch"):
        extract_to_netcdf(model(), [], tmp_path / "nothing.nc", progress=False)
    net = model()
    with seqacts.record(net) as rec:  # record() too: an empty forward adds no sample
        net(empty)
        net(batches[1])
    assert rec.to_dataset().sizes["sample"] == 8


def test_lock_file_goes_away_with_the_run_also_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "u.nc"
    with pytest.raises(KeyboardInterrupt):
        extract_to_netcdf(model(), _interrupted(inputs(1)), path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.nc"]
    extract_to_netcdf(model(), inputs(2), path, resume=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.nc"]


# Last in this file: a failed write leaves HDF5 holding a handle released to /dev/null, and
# reads of deliberately corrupted files in the same process are best done before that.
@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "write-fails"])
def test_disk_full_commits_nothing_false_and_resume_finishes(
    small_fs: Path, tmp_path: Path, preflight: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not preflight:  # let the write itself hit ENOSPC (as when another program fills the disk)
        monkeypatch.setattr(seqacts.io.ncfile, "preflight", lambda *a: None)
    batches, path = inputs(), small_fs / "full.nc"
    with pytest.raises(StreamWriteError) as info:
        extract_to_netcdf(model(), batches, path, progress=False)
    err = info.value
    assert err.errno == errno.ENOSPC and err.filename == str(path)
    assert "keeps the" in str(err) and "resume=True" in str(err)
    assert "During handling" not in "".join(traceback.format_exception(err))
    committed = int(str(err).split("keeps the ")[1].split()[0])
    assert committed % 32 == 0 and 0 < committed < 256
    same(read_fresh(path, tmp_path / "copy.nc"), expected(batches[: committed // 32]))
    assert verify(path).ok and not list(small_fs.glob(".*lock"))

    subprocess.run(["mount", "-o", "remount,size=4m", str(small_fs)], check=True)
    monkeypatch.undo()
    extract_to_netcdf(model(), batches, path, resume=True, progress=False)
    same(read_fresh(path, tmp_path / "copy2.nc"), expected(batches))


def test_disk_full_with_overwrite_keeps_old_file_and_no_temp(small_fs: Path) -> None:
    old = inputs(1, 8)
    path = extract_to_netcdf(model(), old, small_fs / "o.nc", progress=False)
    with pytest.raises(StreamWriteError, match="No space|free"):
        extract_to_netcdf(model(), inputs(), path, overwrite=True, progress=False)
    assert sorted(p.name for p in small_fs.iterdir()) == ["o.nc"]  # temp file removed
    with open_dataset(path) as ds:
        same(ds.load(), expected(old))


FSIZE = """
import resource, sys
sys.path.insert(0, {tests!r})
import seqacts, seqacts.io.ncfile
from test_faults import model, inputs
if sys.argv[2] == "no-preflight":
    seqacts.io.ncfile.preflight = lambda *a: None
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
try:
    seqacts.extract_to_netcdf(model(), inputs(), sys.argv[1], progress=False)
except seqacts.StreamWriteError as err:
    print("errno", err.errno)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["preflight", "no-preflight"])
def test_file_size_limit_then_resume(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "f.nc"
    script = textwrap.dedent(FSIZE).format(tests=str(HERE))
    out = subprocess.run([sys.executable, "-c", script, str(path), mode], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert f"errno {errno.EFBIG}" in out
    if mode == "no-preflight":  # the limit cut the file short: said so, not "being written"
        with pytest.raises(CorruptFileError, match="truncated") as info:
            open_dataset(path)
        assert "being written" not in str(info.value)
        with pytest.warns(UserWarning, match="cut short"):
            extract_to_netcdf(model(), inputs(), path, resume=True, progress=False)
    else:
        with pytest.warns(seqacts.IncompleteStreamWarning):
            open_dataset(path).close()
        extract_to_netcdf(model(), inputs(), path, resume=True, progress=False)
    same(read_fresh(path, tmp_path / "copy.nc"), expected(inputs()))


def test_interrupted_trim_rewrite_keeps_the_file_and_removes_its_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seqacts.io import ncfile, rewrite

    path = extract_to_netcdf(model(), inputs(2, 8), tmp_path / "k.nc", progress=False)
    before = path.read_bytes()

    def interrupted(self: ncfile.Writer, *args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(ncfile.Writer, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rewrite.rewrite_trimmed(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.nc"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    rewrite.rewrite_trimmed(path)  # the copy's handle was closed: it can run again
    with open_dataset(path) as ds:
        same(ds.load(), expected(inputs(2, 8)))


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_file_created_meanwhile_is_never_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       hard_links: bool) -> None:
    path = tmp_path / "race.nc"
    real_link = os.link

    def racing_link(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        Path(dst).write_bytes(b"another process's file")  # it wins the race
        if not hard_links:
            raise OSError(errno.EPERM, "Operation not permitted")
        real_link(src, dst)

    monkeypatch.setattr(destination.os, "link", racing_link)
    with pytest.raises(OutputExistsError, match="created by another process"):
        extract_to_netcdf(model(), inputs(2), path, progress=False)
    assert path.read_bytes() == b"another process's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.nc"]
