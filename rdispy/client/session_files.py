"""What a JobCluster session ships to its nodes: the computation (a function, or a program file
and the runner that starts it) and its ``depends`` (files, single-file modules, functions,
classes), as content-addressed blobs and manifests naming them.

A manifest (``{"files": [(name, digest, mode)], "globals": {name: object}}``) is what a node's
workspace lays out before the session's first job there; a node's or a job's own ``depends``
make a manifest of their own, the session's plus theirs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from rdispy import serialization
from rdispy.errors import ConfigError
from rdispy.programs import run_program, run_program_collect
from rdispy.wire import check_file_name

FileEntry = tuple[str, str, int]  # name on the node, blob digest, mode


class SessionFiles:
    """The session's computation and dependencies, uploaded through ``upload`` (bytes in, digest
    out) as they are added."""

    def __init__(self, upload: Callable[[bytes], str], collect_files: bool = False) -> None:
        self._upload = upload
        self._collect_files = collect_files
        self.files: list[FileEntry] = []
        self.names: dict[str, Any] = {}
        self.program = ""  # the program's file name, when the computation is a program

    def computation(self, computation: Callable[..., Any] | str) -> Callable[..., Any]:
        """The function each job calls: ``computation`` itself, or for a program path the runner
        that starts it (the program file goes with the session)."""
        if callable(computation):
            return computation
        path = Path(computation)
        if not path.is_file():
            raise ConfigError(
                f"computation {computation!r} is neither a function nor a program file"
            )
        self.program = check_file_name(path.name)
        self.files.append(self._file_entry(path))
        return run_program_collect if self._collect_files else run_program

    def add(self, item: Any) -> None:
        """Add one of ``depends`` to the session's."""
        _depend(item, self.files, self.names, self._file_entry)

    def manifest(self, extra: Iterable[Any] = ()) -> str:
        """The digest of a manifest of the session's dependencies plus ``extra`` (a node's or a
        job's own ``depends``), uploaded."""
        files, names = list(self.files), dict(self.names)
        for item in extra:
            _depend(item, files, names, self._file_entry)
        return self._upload(serialization.dumps({"files": files, "globals": names}, "depends"))

    def _file_entry(self, path: Path) -> FileEntry:
        data = path.read_bytes()
        return (check_file_name(path.name), self._upload(data), path.stat().st_mode)


def _depend(
    item: Any,
    files: list[FileEntry],
    names: dict[str, Any],
    file_entry: Callable[[Path], FileEntry],
) -> None:
    if isinstance(item, (str, os.PathLike)):
        files.append(file_entry(Path(item)))
    elif isinstance(item, ModuleType):
        source = getattr(item, "__file__", None)
        if not source or Path(source).name == "__init__.py":
            raise ConfigError(f"module {item.__name__} in depends must be a single .py file")
        files.append(file_entry(Path(source)))
    elif inspect.isfunction(item) or inspect.isclass(item):
        names[item.__name__] = item
    else:
        raise ConfigError(
            f"cannot send {item!r} in depends: give a path, module, function or class"
        )
