"""``config.toml`` and ``--config`` files: reading a user's, writing ours.

Reading refuses what a flat settings file cannot mean (tables, a key given
twice, unknown keys, with the closest known key as a hint); writing is a small
flat-key TOML writer, since the standard library only reads TOML.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from blazefl._exceptions import ConfigurationError
from blazefl.cli._config import CHECKS, KEYS

__all__ = [
    "MAX_CONFIG_BYTES",
    "check_config_values",
    "dump_toml",
    "load_toml",
    "read_config_file",
]

#: The largest config file read (``config.toml`` is about a kilobyte).
MAX_CONFIG_BYTES = 1 << 20


def load_toml(path: Path) -> dict[str, object]:
    """A TOML file as parsed; `ConfigurationError` if unreadable or invalid.

    Only a regular file of at most `MAX_CONFIG_BYTES` of UTF-8 is read.
    """
    import tomllib  # here, not at the top: `blazefl --help` never needs it

    text = _read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses once per nested array or table
        raise ConfigurationError(
            f"{path} nests arrays or tables too deeply to read; the config file "
            "takes flat keys only (key = value)"
        ) from None


def read_config_file(path: Path) -> dict[str, object]:
    """A config file's settings, keys normalised to snake_case.

    Raises `ConfigurationError` for an unreadable file (not a regular file,
    too large, not UTF-8), nested tables, a key
    given twice (``batch-size`` and ``batch_size``) and unknown keys (with the
    closest known key as a suggestion).
    """
    return check_config_values(load_toml(path), path)


def check_config_values(raw: dict[str, object], path: Path) -> dict[str, object]:
    """The flat settings of a parsed config file, checked (see above)."""
    values: dict[str, object] = {}
    for raw_key, value in raw.items():
        key = raw_key.replace("-", "_")
        if isinstance(value, dict):
            raise ConfigurationError(
                f"{path}: [{raw_key}] is a table; the config file takes flat "
                "keys only (key = value)"
            )
        if key not in CHECKS:
            import difflib

            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"{path}: unknown key {raw_key!r}{hint} (known keys: {', '.join(KEYS)})"
            )
        if key in values:
            raise ConfigurationError(f"{path}: {key!r} is given twice")
        values[key] = value
    return values


def _read_text(path: Path) -> str:
    """The file's text: a regular file of at most `MAX_CONFIG_BYTES` of UTF-8.

    A FIFO or a device (``/dev/zero``) would block or never end; a settings
    file is a few hundred bytes, so a large one is a mistake too.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigurationError(
                    f"{path} is not a regular file; a config file is a TOML file"
                )
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot read config file {path}: {reason}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigurationError(
            f"{path} is larger than {MAX_CONFIG_BYTES} bytes; a config file holds "
            "flat key = value settings"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}); a config file is TOML, which is UTF-8"
        ) from None


def dump_toml(values: Mapping[str, object], header: str = "") -> str:
    """Flat ``key = value`` TOML for strings, booleans, integers and floats."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
        return repr(value)  # shortest round-trip form; TOML reads it back exactly
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'

    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _toml_char(char: str) -> str:
    # A TOML basic string escapes the quote, the backslash and control
    # characters; everything else (the file is UTF-8) is written as is.
    if char in '"\\':
        return "\\" + char
    if char < " " or char == "\x7f":
        return f"\\u{ord(char):04x}"
    return char
