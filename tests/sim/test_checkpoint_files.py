"""load_checkpoint opens regular files only, and reads no more than the
header declares: no device, FIFO or directory behind a path or a link."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from blazefl import ConfigurationError
from blazefl.sim import load_checkpoint, save_checkpoint


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "real.ckpt"
    save_checkpoint(path, {"round": 2, "params": torch.arange(6.0)})
    return path


def _link(tmp_path: Path, target: str | Path) -> Path:
    link = tmp_path / "checkpoint.ckpt"
    link.symlink_to(target)
    return link


def test_a_symlink_to_a_checkpoint_is_followed(tmp_path: Path) -> None:
    """A link to a regular checkpoint file is read like the file."""
    link = _link(tmp_path, _saved(tmp_path))
    assert load_checkpoint(link)["round"] == 2


def test_a_symlink_to_dev_zero_is_refused_without_reading(tmp_path: Path) -> None:
    """/dev/zero would be read until memory runs out; it is never opened."""
    link = _link(tmp_path, "/dev/zero")
    message = (
        rf"^{re.escape(str(link))} \(a symbolic link to '/dev/zero'\) is a "
        r"character device; a checkpoint is read from a regular file only$"
    )
    with pytest.raises(ConfigurationError, match=message):
        load_checkpoint(link)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A named pipe with no writer would block an open() forever."""
    fifo = tmp_path / "checkpoint.ckpt"
    os.mkfifo(fifo)
    with pytest.raises(ConfigurationError, match=r"is a FIFO \(named pipe\);"):
        load_checkpoint(fifo)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint.ckpt"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match=r"checkpoint\.ckpt is a directory;"):
        load_checkpoint(folder)


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    link = _link(tmp_path, tmp_path / "gone.ckpt")
    message = (
        rf"^{re.escape(str(link))} is a symbolic link to "
        rf"'{re.escape(str(tmp_path / 'gone.ckpt'))}', which does not exist"
    )
    with pytest.raises(ConfigurationError, match=message):
        load_checkpoint(link)


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.ckpt")


def test_bytes_appended_are_not_called_truncation(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with path.open("ab") as f:
        f.write(b"tail" * 3)
    with pytest.raises(
        ConfigurationError,
        match=r"real\.ckpt has 12 bytes after the \d+ its header declares: it "
        r"was appended to or altered$",
    ):
        load_checkpoint(path)


def test_a_header_declaring_more_than_the_file_holds(tmp_path: Path) -> None:
    """A header claiming a terabyte body is measured against the file's size,
    not read (or allocated) up to it."""
    path = _saved(tmp_path)
    magic, header, body = path.read_bytes().split(b"\n", 2)
    header = header.replace(
        f'"size": {len(body)}'.encode(), f'"size": {10**12}'.encode()
    )
    path.write_bytes(magic + b"\n" + header + b"\n" + body)
    with pytest.raises(
        ConfigurationError, match=rf"is truncated: {len(body)} of {10**12} bytes"
    ):
        load_checkpoint(path)


@pytest.mark.parametrize("size", ["-1", "true", '"12"', "1.5"])
def test_a_header_with_a_bad_size_is_damaged(tmp_path: Path, size: str) -> None:
    path = _saved(tmp_path)
    magic, header, body = path.read_bytes().split(b"\n", 2)
    header = re.sub(rb'"size": \d+', b'"size": ' + size.encode(), header)
    path.write_bytes(magic + b"\n" + header + b"\n" + body)
    with pytest.raises(ConfigurationError, match=r"damaged checkpoint header \(size"):
        load_checkpoint(path)


def test_a_header_line_without_end_is_damaged(tmp_path: Path) -> None:
    """The header line is looked for in the first 4 KiB only."""
    path = tmp_path / "long.ckpt"
    path.write_bytes(b"BLAZEFL-CHECKPOINT\n" + b"{" * (1 << 20))
    with pytest.raises(ConfigurationError, match=r"damaged checkpoint header$"):
        load_checkpoint(path)
