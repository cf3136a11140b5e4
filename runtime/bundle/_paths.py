"""Relative paths inside a bundle: one check shared by the manifest and the archive reader."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_DRIVE = re.compile(r"^[A-Za-z]:")


def relative_path(name: str, what: str) -> PurePosixPath:
    """``name`` as a normalised relative POSIX path that cannot leave its root, or ValueError.

    Refused: empty names, absolute paths, Windows drives or backslashes, NUL bytes and any
    ``..`` component. ``./a`` and ``a//b`` are normalised (``a``, ``a/b``).
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string path, got {type(name).__name__}")
    if "\x00" in name or "\\" in name:
        raise ValueError(f"{what} {name!r} contains a NUL byte or a backslash")
    if name.startswith("/") or _DRIVE.match(name):
        raise ValueError(f"{what} {name!r} is absolute; only paths relative to the bundle are allowed")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise ValueError(f"{what} {name!r} has a '..' component and could escape the bundle")
    return path
