"""``Executor(initializer=, initargs=)``: a function run in each consumer process before the first
job of that executor it runs there, as ProcessPoolExecutor runs one in each of its workers.

The client sends every job's function wrapped in ``Initialized`` (pickled once per function, with
the initializer and its arguments). In a consumer process the wrapper runs the initializer the
first time a job of its executor (its ``token``) arrives, then calls the function. If the
initializer raises, that job and every later job of the executor in that process fail with
``InitializerFailed`` (also a BrokenProcessPool, as the standard pool raises), which breaks the
executor on the client.

A function pickled by value (defined in ``__main__``, or of a module registered by value) gets
its own copy of its module's globals with each pickle; so that a global the initializer assigns
(``global MODEL; MODEL = load()``) is seen by every function of the executor, not only by the
one it was pickled with, the names the initializer assigns are copied into the globals of each
later function of the same module, once, before its first call (objects are shared, not copied).
"""

from __future__ import annotations

import dis
import sys
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from rdispy.errors import InitializerFailed, also_as, broken_pool


class _Ran:
    """What the initializer of one executor left in this process."""

    def __init__(self, globals_: dict[str, Any] | None, names: frozenset[str], module: str):
        self.globals, self.names, self.module = globals_, names, module
        self.failure: str | None = None


#: Per executor token: the initializer's run in this process.
_RAN: dict[str, _Ran] = {}


class Initialized:
    """``fn`` of an executor with an initializer; called like ``fn``."""

    def __init__(
        self,
        token: str,
        initializer: Callable[..., Any],
        initargs: tuple[Any, ...],
        fn: Callable[..., Any],
        weak: bool = False,
    ) -> None:
        self.token, self.initializer, self.initargs = token, initializer, initargs
        self._fn: Any = fn
        if weak:  # on the client: this wrapper must not keep the user's function alive
            try:
                self._fn = weakref.ref(fn)
            except TypeError:  # builtins take no weak reference (and keep nothing alive)
                pass
        self._synced = False
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)

    @property
    def fn(self) -> Callable[..., Any]:
        fn = self._fn() if isinstance(self._fn, weakref.ref) else self._fn
        if fn is None:
            raise ReferenceError("the wrapped function was collected")
        return fn  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Initialized, (self.token, self.initializer, self.initargs, self.fn))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ran = _RAN.get(self.token)
        if ran is None:
            ran = _RAN[self.token] = self._run_initializer()
        if ran.failure is not None:
            raise also_as(InitializerFailed, broken_pool())(ran.failure)
        if not self._synced:
            self._synced = True
            _share_globals(ran, self.fn)
        return self.fn(*args, **kwargs)

    def _run_initializer(self) -> _Ran:
        init = self.initializer
        code = getattr(init, "__code__", None)
        names = frozenset(
            ins.argval
            for ins in (dis.get_instructions(code) if code is not None else ())
            if ins.opname == "STORE_GLOBAL"
        )
        ran = _Ran(getattr(init, "__globals__", None), names, getattr(init, "__module__", ""))
        try:
            init(*self.initargs)
        except BaseException as exc:  # noqa: BLE001 - every failure breaks the executor
            if isinstance(exc, KeyboardInterrupt):
                raise
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            ran.failure = (
                f"the executor's initializer {getattr(init, '__qualname__', init)!r} raised "
                f"{type(exc).__name__}: {exc}; the executor is broken (fix the initializer "
                f"and create a new one). Remote traceback:\n{tb}"
            )
        return ran


def _share_globals(ran: _Ran, fn: Callable[..., Any]) -> None:
    """Copy what the initializer assigned into ``fn``'s globals when ``fn`` has a copy of its
    own of the initializer's module (see the module docstring)."""
    fn_globals = getattr(fn, "__globals__", None)
    if not ran.names or ran.globals is None or fn_globals is None or fn_globals is ran.globals:
        return
    if getattr(fn, "__module__", None) != ran.module:
        return
    module = sys.modules.get(ran.module)
    if module is not None and fn_globals is vars(module):
        return  # a real module: the initializer assigned into it already
    for name in ran.names:
        if name in ran.globals:
            fn_globals[name] = ran.globals[name]
