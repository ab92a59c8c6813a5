"""The HDF5 superblock parser (one, shared by the truncation repair and the header check) and
the errors a file that cannot be read gives."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
import xarray as xr
from torch import nn

import seqacts
from seqacts.io.integrity import (
    Superblock,
    explain_unreadable,
    header_problem,
    read_superblock,
    repair_truncated,
)


@pytest.fixture
def stream_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = nn.GRU(3, 4, batch_first=True).eval()
    return seqacts.extract_to_netcdf(model, [torch.randn(4, 6, 3)], tmp_path / "s.nc",
                                     progress=False)


def test_a_whole_file_superblock_gives_its_length(stream_file: Path) -> None:
    sb = read_superblock(stream_file.read_bytes()[:4096])
    assert isinstance(sb, Superblock) and sb.at == 0
    assert sb.eof == stream_file.stat().st_size
    assert header_problem(stream_file) is None
    assert repair_truncated(stream_file) is False  # nothing to repair


def test_a_plain_xarray_netcdf4_file_parses_too(tmp_path: Path) -> None:
    path = tmp_path / "x.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(path, engine="netcdf4")
    sb = read_superblock(path.read_bytes()[:4096])
    assert isinstance(sb, Superblock) and sb.eof == path.stat().st_size


def test_truncated_and_foreign_files_say_what_is_wrong(stream_file: Path, tmp_path: Path) -> None:
    size = stream_file.stat().st_size
    cut = tmp_path / "cut.nc"
    cut.write_bytes(stream_file.read_bytes()[: size // 2])
    problem = header_problem(cut)
    assert problem is not None and problem.startswith("truncated: its header says "
                                                      f"{size} bytes but the file has {size // 2}")
    foreign = tmp_path / "foreign.nc"
    foreign.write_bytes(b"CDF\x01" + bytes(600))  # a netCDF3 header
    assert read_superblock(foreign.read_bytes()) == (
        "no HDF5/netCDF4 signature at its start (first bytes b'CDF\\x01\\x00\\x00\\x00\\x00'); "
        "it is not a netCDF4 file or its header was overwritten")
    assert "broken header: no HDF5/netCDF4 signature" in str(header_problem(foreign))
    odd = bytearray(stream_file.read_bytes()[:4096])
    odd[8] = 9  # an unknown superblock version
    assert read_superblock(bytes(odd)) == "unknown HDF5 superblock version 9"


def test_unreadable_files_raise_seqacts_errors_with_an_errno(stream_file: Path,
                                                             tmp_path: Path) -> None:
    cause = OSError("NetCDF: HDF error")
    err = explain_unreadable(stream_file, cause, "open")  # whole header: another reason
    assert isinstance(err, seqacts.UnreadableFileError) and isinstance(err, OSError)
    assert err.errno == errno.EIO and "close it first" in str(err)
    cut = tmp_path / "cut.nc"
    cut.write_bytes(stream_file.read_bytes()[:100])
    broken = explain_unreadable(cut, cause, "resume")
    assert isinstance(broken, seqacts.CorruptFileError) and broken.errno == errno.EIO
    assert broken.strerror.startswith(f"resume: {cut} is unreadable, truncated")
