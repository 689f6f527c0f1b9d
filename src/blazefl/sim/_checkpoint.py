"""Checkpoint files: atomic to write, safe and tamper-evident to read.

Layout: a magic line, one JSON header line (format version, byte size and
SHA-256 of the body), then the body: a `torch.save` of plain data (dicts,
lists, numbers, strings, tensors). Reading checks the magic, the format
version, the size (a truncated or appended-to file) and the digest (a
corrupted or edited file) *before* deserialising anything, and then
deserialises with ``torch.load(weights_only=True)``, which refuses arbitrary
pickled objects. Only a regular file is opened (never a FIFO, a device or a
directory, even behind a symbolic link), and no more of it is read than the
header line (at most 4 KiB) and the body size it declares.

Writing goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the old checkpoint: a crash at any moment leaves either the
old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from blazefl._exceptions import ConfigurationError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = 1
_MAGIC = b"BLAZEFL-CHECKPOINT\n"
#: What a `torch.save` file starts with: it is a zip archive (torch >= 1.6).
#: Anything else would reach torch's legacy unpickling reader.
_TORCH_ARCHIVE = b"PK\x03\x04"


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (torch's span several)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The most read before the header line must have ended (it is ~100 bytes).
_HEADER_LIMIT = 4096


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename).

    When the write fails (disk full, file size limit, read-only folder, ...)
    it raises `OSError` of the failure's errno and reason, whose ``filename``
    is ``path`` (not the temporary file), and leaves the previous checkpoint
    at ``path`` intact and no temporary file behind.
    """
    target = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    header = json.dumps(
        {
            "format": CHECKPOINT_FORMAT,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    ).encode("ascii")
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise _write_error(target, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + header + b"\n" + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(target, exc) from exc
        raise
    _fsync_dir(target.parent)


def _write_error(target: Path, exc: OSError) -> OSError:
    """The failure named after the checkpoint, not the temporary file.

    ``OSError(errno, ...)`` picks the matching subclass (`PermissionError`
    for EACCES, ...), so callers can still tell the causes apart.
    """
    if exc.errno is None:
        return OSError(f"{target}: {exc}")
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, verifying it first.

    Raises `ConfigurationError` naming the problem for a file that is not a
    blazefl checkpoint, has a newer format, is truncated or has bytes beyond
    its declared end, or fails its digest; and for a path that is not a
    regular file (a directory, a FIFO, a device, a dangling symbolic link):
    a checkpoint is read from a regular file only, and never more of it than
    its header declares. A path that does not exist raises
    `FileNotFoundError`.
    """
    source = Path(path)
    with _open_regular(source) as (f, size):
        head = f.read(len(_MAGIC) + _HEADER_LIMIT)
        if not head.startswith(_MAGIC):
            raise ConfigurationError(f"{source} is not a blazefl checkpoint")
        header_line, sep, _ = head[len(_MAGIC) :].partition(b"\n")
        try:
            header = json.loads(header_line) if sep else None
        except ValueError:
            header = None
        if not isinstance(header, dict):
            raise ConfigurationError(f"{source}: damaged checkpoint header")
        version = header.get("format")
        if version != CHECKPOINT_FORMAT:
            raise ConfigurationError(
                f"{source} has checkpoint format {version!r}; this blazefl reads "
                f"format {CHECKPOINT_FORMAT} (written by a newer version?)"
            )
        declared = header.get("size")
        if isinstance(declared, bool) or not isinstance(declared, int) or declared < 0:
            raise ConfigurationError(
                f"{source}: damaged checkpoint header (size {declared!r})"
            )
        start = len(_MAGIC) + len(header_line) + 1
        held = size - start
        if held > declared:
            raise ConfigurationError(
                f"{source} has {held - declared} bytes after the "
                f"{declared} its header declares: it was appended to or altered"
            )
        if held < declared:  # measured, not read: nothing is allocated for it
            raise ConfigurationError(
                f"{source} is truncated: {max(held, 0)} of {declared} bytes"
            )
        f.seek(start)
        body = f.read(declared + 1)  # one more: a file that grew since fstat
    if len(body) != declared:
        raise ConfigurationError(
            f"{source} changed while it was read: {len(body)} bytes where its "
            f"header declares {declared}"
        )
    actual = hashlib.sha256(body).hexdigest()
    if actual != header.get("sha256"):
        raise ConfigurationError(
            f"{source} fails its SHA-256 check (the header records "
            f"{str(header.get('sha256'))[:16]}..., the body hashes to "
            f"{actual[:16]}...): it was altered"
        )
    if not body.startswith(_TORCH_ARCHIVE):
        raise ConfigurationError(
            f"{source}: its body ({len(body)} bytes, digest valid) is not a "
            f"torch.save archive: it starts with {body[:8]!r}, an archive with "
            f"{_TORCH_ARCHIVE!r}"
        )
    try:
        state = torch.load(io.BytesIO(body), weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigurationError(
            f"{source} holds objects other than plain data and tensors; refusing "
            f"to unpickle them ({_first_line(exc)})"
        ) from exc
    except Exception as exc:
        # torch's reader raises what it meets (RuntimeError, EOFError,
        # KeyError, ...) on bytes torch.save did not write; the digest only
        # says they are the bytes the header was made for.
        raise ConfigurationError(
            f"{source}: its body ({len(body)} bytes, digest valid) is not a "
            f"torch.save archive ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    if not isinstance(state, dict):
        raise ConfigurationError(f"{source} does not hold a state dict")
    return state


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@contextlib.contextmanager
def _open_regular(source: Path) -> Iterator[tuple[BinaryIO, int]]:
    """``source`` opened for reading if it is a regular file, and its size.

    Checked with ``stat`` before opening, so a FIFO (whose open would block)
    or a device is never opened; opened without blocking and checked again
    with ``fstat``, so a file swapped in between is refused too.
    """
    try:
        before = os.stat(source)
    except FileNotFoundError:
        if source.is_symlink():
            raise ConfigurationError(
                f"{source} is a symbolic link to {os.readlink(source)!r}, which "
                "does not exist; expected a checkpoint file"
            ) from None
        raise
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read checkpoint {source}: {exc.strerror or exc}"
        ) from None
    if not stat.S_ISREG(before.st_mode):
        kind = _KINDS.get(stat.S_IFMT(before.st_mode), "not a regular file")
        via = (
            f" (a symbolic link to {os.readlink(source)!r})"
            if source.is_symlink()
            else ""
        )
        raise ConfigurationError(
            f"{source}{via} is {kind}; a checkpoint is read from a regular file only"
        )
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read checkpoint {source}: {exc.strerror or exc}"
        ) from None
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) or not (
            stat.S_ISREG(now.st_mode)
        ):
            raise ConfigurationError(
                f"{source} was replaced while it was opened; try again"
            )
        yield f, now.st_size


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
