"""Claims: one run at a time on a client-state file or a run folder.

Two simulations committing to one SQLite client-state file, or two ``blazefl
run --resume`` of one folder, would each build on the other's rows and log
lines and end with wrong numbers and no error. A claim is an exclusive
``flock`` on a lock file (``clients.sqlite.lock`` beside a state file,
``run.lock`` inside a run folder), taken without waiting: a second claimant
fails at once with `InUseError`, whose message names the holder, since the
holder writes its pid, host, start time and command into the lock file as
soon as it holds the lock.

Why ``flock``: the kernel drops it when the holder's last descriptor closes,
so a ``kill -9`` or an OOM kill never leaves a stale lock to remove by hand.
The lock file itself stays (removing it would race with a claimant that just
opened it); its contents are only read while someone holds the lock. A flock
belongs to one open file description, so a second store object on the same
file in the *same* process is refused as well. SQLite's own locks do not do
this job: they serialise single transactions, not whole runs.

Where the file system offers no flock (some network and FUSE mounts answer
``ENOLCK`` or ``EOPNOTSUPP``) the run goes on unclaimed, with a
`RuntimeWarning` saying so. On Windows there is no flock: nothing is claimed
(docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import socket
import stat
import sys
import time
import warnings
import weakref
from pathlib import Path
from types import TracebackType

from blazefl._exceptions import ConfigurationError, InUseError

__all__ = ["Claim", "claim"]

#: errnos of a file system that cannot lock: run unclaimed, with a warning.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_RECORD_BYTES = 4096


class Claim:
    """An exclusive claim, held until `release` (or the process ends).

    Use ``with claim(...):`` or call `release`; a claim that is collected
    unreleased closes its descriptor, which releases it too.
    """

    def __init__(self, lock_path: Path, fd: int | None) -> None:
        self.lock_path = lock_path
        self._fd = fd
        self._closer = None if fd is None else weakref.finalize(self, os.close, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the claim up (idempotent)."""
        if self._fd is None or self._closer is None:
            return
        if sys.platform != "win32":
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._closer()
        self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def claim(lock_path: Path, what: str, advice: str) -> Claim:
    """Claim ``lock_path`` for this process, or raise `InUseError`.

    ``what`` names the guarded thing at the start of the message (``"run
    folder runs/x"``); ``advice`` ends it (what the user can do).
    """
    if sys.platform == "win32":  # no flock: documented as unclaimed
        return Claim(lock_path, None)
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ConfigurationError(
            f"{what}: cannot open its lock file {lock_path}: {exc.strerror or exc}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigurationError(
            f"{what}: its lock file {lock_path} exists and is not a regular file"
        )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise InUseError(
            f"{what} is in use by another run: {holder}; {advice} "
            f"(lock file {lock_path})"
        ) from None
    except OSError as exc:
        os.close(fd)
        if exc.errno not in _NO_LOCKS:
            raise ConfigurationError(
                f"{what}: cannot lock {lock_path}: {exc.strerror or exc}"
            ) from None
        warnings.warn(
            f"{what}: the file system cannot lock {lock_path} "
            f"({exc.strerror or exc}); nothing stops a second run from using it "
            "at the same time",
            RuntimeWarning,
            stacklevel=3,
        )
        return Claim(lock_path, None)
    _record(fd)
    return Claim(lock_path, fd)


def _record(fd: int) -> None:
    """Write who holds the claim (best effort: a full disk must not stop a run)."""
    command = shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command[:300],
    }
    data = (json.dumps(record) + "\n").encode("utf-8")[:_RECORD_BYTES]
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _holder(fd: int) -> str:
    """The holder as its record names it.

    The holder writes its record just after taking the lock; a record read in
    that instant may still be the previous holder's (its pid is gone) or
    empty, so a dead or missing one is read again a few times.
    """
    record: dict[str, object] = {}
    for _ in range(10):
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(os.pread(fd, _RECORD_BYTES, 0) or b"null")
            record = loaded if isinstance(loaded, dict) else {}
        if _alive(record):
            break
        time.sleep(0.02)
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return "a process that has not recorded itself yet"
    if pid == os.getpid() and host == socket.gethostname():
        who = f"this process (pid {pid}, through another object)"
    else:
        who = f"pid {pid} on {host}"
    since, command = record.get("since"), record.get("command")
    if since:
        who += f", since {since}"
    if command:
        who += f" ({command})"
    return who


def _alive(record: dict[str, object]) -> bool:
    pid = record.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if record.get("host") != socket.gethostname():
        return True  # another machine's pid: cannot check, trust the record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
