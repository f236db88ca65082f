"""The public API is exactly rdispy.__all__, checked both ways (as httpx's
tests/test_exported_members.py does): every public name of the module is in ``__all__``, and
every name in ``__all__`` resolves.  rdispy's own submodules (``rdispy.errors``,
``rdispy.progress``, ...) are the only other public names, as the import system puts them there."""

from __future__ import annotations

import concurrent.futures
import importlib
import subprocess
import sys
import types

import rdispy

#: The submodules a bare ``import rdispy`` loads (cheap: the standard library only).
EAGER_SUBMODULES = {"errors", "progress"}


def _public(names: object) -> set[str]:
    return {name for name in names if not name.startswith("_")}  # type: ignore[attr-defined]


def _is_submodule(name: str, value: object) -> bool:
    return isinstance(value, types.ModuleType) and value.__name__ == f"rdispy.{name}"


def test_all_is_sorted_without_duplicates_and_every_name_resolves() -> None:
    assert rdispy.__all__ == sorted(set(rdispy.__all__), key=str.casefold)
    for name in rdispy.__all__:
        assert getattr(rdispy, name) is not None, name
        assert not _is_submodule(name, getattr(rdispy, name)), name


def test_every_public_name_of_the_module_is_in_all() -> None:
    for name in rdispy.__all__:
        getattr(rdispy, name)  # the lazy ones too
    leaked = {
        name
        for name in _public(vars(rdispy)) - set(rdispy.__all__)
        if not _is_submodule(name, vars(rdispy)[name])
    }
    assert leaked == set(), leaked


def test_a_fresh_import_holds_all_and_the_eager_submodules_only() -> None:
    """In a new interpreter nothing else has imported rdispy's submodules: ``import rdispy``
    itself leaks no helper (``Any``, ``TYPE_CHECKING``, ``annotations``) and loads neither the
    worker nor the wire format."""
    script = (
        "import sys, rdispy\n"
        "print(' '.join(sorted(n for n in vars(rdispy) if not n.startswith('_'))))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('rdispy.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    names, modules = set(out[0].split()), set(out[1].split())
    assert names - set(rdispy.__all__) == EAGER_SUBMODULES
    assert modules == {f"rdispy.{name}" for name in EAGER_SUBMODULES}


def test_rdispy_progress_is_the_module_and_its_progress_the_function() -> None:
    module = importlib.import_module("rdispy.progress")
    assert rdispy.progress is module
    import rdispy.progress as imported

    assert imported is module
    assert callable(rdispy.progress.progress)
    assert list(rdispy.progress([], desc="none")) == []  # the module called is the function
    assert rdispy.progress.progress.__module__ == "rdispy.progress"


def test_action_error_is_exported() -> None:
    assert "ActionError" in rdispy.__all__
    from rdispy.errors import ActionError

    assert rdispy.ActionError is ActionError


def test_executor_is_a_standard_executor_and_errors_share_one_root() -> None:
    assert issubclass(rdispy.Executor, concurrent.futures.Executor)
    assert issubclass(rdispy.RemoteFuture, concurrent.futures.Future)
    for name in rdispy.__all__:
        value = getattr(rdispy, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, rdispy.RdispyError)
    assert issubclass(rdispy.ExecutorBroken, concurrent.futures.BrokenExecutor)
