"""Pickling of functions, arguments, results and remote exceptions (cloudpickle).

Nothing outside this module calls pickle.  Exceptions travel as ``(exception, traceback text)``
and are rebuilt the way CPython's process pool does: the original type, with the remote
traceback attached as ``__cause__``; an exception that cannot be rebuilt becomes RemoteError.
"""

from __future__ import annotations

import io
import linecache
import pickle
import platform
import re
import traceback
import types
from collections import ChainMap
from typing import Any, Protocol

import cloudpickle

from rdispy.errors import (
    DeserializationError,
    RemoteError,
    SerializationError,
    broken_pool,
    caused_by,
)

PROTOCOL = pickle.HIGHEST_PROTOCOL


def runtime_tag(python: str, pickler: str) -> bytes:
    """What a job pickled by value needs of the interpreter that unpickles it: the same Python
    minor version (bytecode changes between them) and cloudpickle minor version, as
    ``py3.11/cp3.1``.  Nodes compare it with their own (``RUNTIME``); ``python`` and
    ``pickler`` are version strings such as ``3.11.7`` and ``3.1.1``."""

    def minor(version: str) -> str:
        return ".".join(version.split(".")[:2])

    return f"py{minor(python)}/cp{minor(pickler)}".encode()


#: This interpreter's runtime tag: every job entry carries its client's (wire field ``rt``).
RUNTIME = runtime_tag(platform.python_version(), cloudpickle.__version__)

#: Types the standard pickler handles exactly as cloudpickle does (by value, nothing by
#: reference): calls made only of these skip cloudpickle's slower pure-Python reducer hooks.
_PLAIN = frozenset((type(None), bool, int, float, complex, str, bytes))


def _plain(obj: Any, depth: int = 3) -> bool:
    """True for a small nest of tuples, lists and dicts of plain values."""
    return plain_size(obj, depth) >= 0


def plain_size(obj: Any, depth: int = 3) -> int:
    """Bytes of the str and bytes in a small nest of tuples, lists and dicts of plain values
    (about what its pickle takes); -1 when ``obj`` is not such a nest."""
    kind = type(obj)
    if kind is tuple or kind is list:
        if depth == 0 or len(obj) > 16:
            return -1
        total = 0
        for item in obj:
            if type(item) is str or type(item) is bytes:
                total += len(item)
            elif type(item) in _PLAIN:
                total += 8
            else:
                size = plain_size(item, depth - 1)
                if size < 0:
                    return -1
                total += size
        return total
    if kind is dict:
        if depth == 0 or len(obj) > 16:
            return -1
        total = 0
        for key, value in obj.items():
            key_size, value_size = plain_size(key, depth - 1), plain_size(value, depth - 1)
            if key_size < 0 or value_size < 0:
                return -1
            total += key_size + value_size
        return total
    if kind is str or kind is bytes:
        return len(obj)
    return 8 if kind in _PLAIN else -1


def _code_reduce(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, but keeping its file name (cloudpickle 3 puts
    ``<dynamic-code>`` there), so that a remote traceback of a function defined in ``__main__``
    or a notebook shows the file and its source lines, as ProcessPoolExecutor's does."""
    rebuild, args = cloudpickle.cloudpickle._code_reduce(code)
    args = tuple(code.co_filename if arg == "<dynamic-code>" else arg for arg in args)
    return rebuild, args


class Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]  # untyped base
    """cloudpickle's pickler with ``_code_reduce``."""

    dispatch_table = ChainMap(
        {types.CodeType: _code_reduce}, cloudpickle.CloudPickler.dispatch_table
    )


def _cloud_dumps(obj: Any) -> bytes:
    with io.BytesIO() as sink:
        Pickler(sink, protocol=PROTOCOL).dump(obj)
        return sink.getvalue()


def dumps_plain(obj: Any) -> bytes:
    """Pickle what ``plain_size`` accepted, with the C pickler (the same bytes cloudpickle's
    would mean)."""
    return pickle.dumps(obj, protocol=PROTOCOL)


def dumps(obj: Any, what: str = "object", job_id: str | None = None) -> bytes:
    """Pickle with cloudpickle; SerializationError names what could not be pickled and why."""
    try:
        if _plain(obj):
            return pickle.dumps(obj, protocol=PROTOCOL)
        data = _cloud_dumps(obj)
    except Exception as exc:
        raise _unpicklable(what, exc, job_id) from exc
    return data


def _unpicklable(what: str, exc: Exception, job_id: str | None) -> SerializationError:
    """The error for ``exc`` raised while pickling: also of ``exc``'s type (a PicklingError, the
    TypeError of a lock), as the standard library's executors raise it."""
    return caused_by(
        SerializationError,
        exc,
        f"cannot pickle the {what} ({type(exc).__name__}: {exc}); "
        "pass only picklable values, or build the object inside the job",
        job_id,
    )


class Sink(Protocol):
    """Where ``dump`` writes: anything with ``write(bytes-like)``."""

    def write(self, data: Any, /) -> Any: ...


def dump(obj: Any, sink: Sink, what: str = "object", job_id: str | None = None) -> None:
    """Pickle like ``dumps`` straight into ``sink`` (large buffers are written without a copy)."""
    try:
        if _plain(obj):
            pickle.Pickler(sink, protocol=PROTOCOL).dump(obj)
        else:
            Pickler(sink, protocol=PROTOCOL).dump(obj)
    except Exception as exc:
        raise _unpicklable(what, exc, job_id) from exc


def loads(data: bytes, what: str = "payload", job_id: str | None = None) -> Any:
    """Unpickle; DeserializationError says what failed (often a module missing on this side).

    The error is also of the original type and a BrokenProcessPool, what ProcessPoolExecutor
    raises when a job or its result cannot be unpickled; a SystemExit raised while unpickling
    ends up in it too, so it neither stops this process nor the thread reading results."""
    try:
        return pickle.loads(data)
    except (Exception, SystemExit) as exc:
        raise caused_by(
            DeserializationError,
            exc,
            f"cannot unpickle the {what} ({type(exc).__name__}: {exc}); "
            "is every module it needs importable here?",
            job_id,
            also=(broken_pool(),),
        ) from exc


def remote_traceback(tb: str) -> Exception:
    """What carries a remote traceback's text (``.tb``) as ``__cause__`` of a re-raised job
    exception: ProcessPoolExecutor's own type, which code written for it looks for."""
    from concurrent.futures.process import _RemoteTraceback

    return _RemoteTraceback(tb)  # type: ignore[arg-type]  # typeshed: it takes the text


def dump_exception(exc: BaseException, job_id: str | None = None) -> bytes:
    """Pickle a job's exception in two layers: plain text that always unpickles (the type's
    qualified name, the message, the traceback) around the pickled exception itself, so that an
    exception that cannot be rebuilt on the client still arrives as a RemoteError with its name,
    message and traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    name = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    try:
        inner: bytes | None = _cloud_dumps(exc)
    except Exception:
        inner = None
    envelope = ("rdispy-exc-1", name, _message(exc), tb, inner, job_id)
    return pickle.dumps(envelope, protocol=PROTOCOL)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as err:  # a broken __str__ must not lose the rest
        return f"<str() failed: {type(err).__name__}>"


def load_exception(data: bytes, job_id: str | None = None) -> BaseException:
    """Rebuild a job's exception with the remote traceback as its cause; one that cannot be
    rebuilt here becomes RemoteError with the type's name, the message and the traceback."""
    try:
        envelope = pickle.loads(data)
    except Exception as err:
        return RemoteError(
            "UnknownError", f"the job's exception could not be unpickled here ({err})", "", job_id
        )
    if isinstance(envelope, tuple) and len(envelope) == 6 and envelope[0] == "rdispy-exc-1":
        _, name, message, tb, inner, job_id = (*envelope[:5], job_id or envelope[5])
        exc: Any = None
        why = "it could not be pickled on the node"
        if inner is not None:
            try:
                exc = pickle.loads(inner)
            except Exception as err:
                why = f"it cannot be rebuilt here ({type(err).__name__}: {err})"
        if not isinstance(exc, BaseException):
            exc = RemoteError(name, message, tb, job_id)
            exc.rebuild_error = why
    else:  # (exception, traceback) of a node from before the two layers
        exc, tb = envelope
        if not isinstance(exc, BaseException):
            return RemoteError(type(exc).__name__, repr(exc), tb, job_id)
    rebuilt: BaseException = exc
    rebuilt.__cause__ = remote_traceback(f'\n"""\n{with_source_lines(tb)}"""')
    return rebuilt


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in .*$')


def with_source_lines(tb: str) -> str:
    """``tb`` with the source line added, from this machine's files, under each frame that has
    none (the node did not have the file: a client's script run on another machine)."""
    lines = tb.splitlines(keepends=True)
    out: list[str] = []
    for n, line in enumerate(lines):
        out.append(line)
        frame = _FRAME.match(line.rstrip("\n"))
        if frame is None:
            continue
        following = lines[n + 1] if n + 1 < len(lines) else ""
        if following.startswith("    "):
            continue
        source = linecache.getline(frame["file"], int(frame["line"])).strip()
        if source:
            out.append(f"    {source}\n")
    return "".join(out)
