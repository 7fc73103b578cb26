"""Server paths out of what the open routes show: event messages, job errors and load errors often name files.

`without_paths` rewrites every absolute path in a text: one inside the workspace becomes relative to it, any other
becomes its last component, so a client learns which file was involved but not where the server keeps it.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

#: an absolute POSIX path (not the `//host/...` of a URL or a `shoal://` URI) or a Windows drive path
_ABSOLUTE = re.compile(r"""(?<![\w.:/\\~-])/[^\s'"`<>|,;()\[\]{}]*|\b[A-Za-z]:\\[^\s'"`<>|,;()\[\]{}]*""")


_ROUTES = "/v1/"


def without_paths(text: str, root: Path) -> str:
    """`text` with each absolute path relative to `root` when inside it, else reduced to its last component."""
    for folder in sorted({str(root.absolute()), str(root.resolve())}, key=len, reverse=True):
        text = text.replace(folder.rstrip("/") + "/", "")  # first: a workspace path may hold spaces
    return _ABSOLUTE.sub(_name, text)


def _name(match: re.Match[str]) -> str:
    path = match.group()
    if path.startswith(_ROUTES):  # this server's own routes (advice such as "POST /v1/reload") are not files
        return path
    return (PureWindowsPath(path) if "\\" in path else PurePosixPath(path)).name or "."
