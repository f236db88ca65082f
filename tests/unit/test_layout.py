"""The package's rooms and who may import whom, read from the source with ``ast``.

rdispy/worker is the node side; rdispy/client, scheduler, relay and monitor are the other side,
and neither reaches into the other: what both use (node records, the consumer group, program
jobs, a job's context, ...) lives in the top-level modules below both.  The command line
(rdispy/cli) starts a node only from ``rdispy.cli.worker``.

Imports are read statically: ``import x`` and ``from x import y`` anywhere in a module, and
string literals naming a module (``importlib.import_module("..."), sys.modules.get("...")``).
Each is one of three kinds: *top* (runs when the module is imported: module and class level,
also inside ``try``/``if``), *deferred* (inside a function) and *typing* (under
``if TYPE_CHECKING:``, never run).  The layering rules hold for every kind; the cycle rules hold
for top imports, the ones that run at import time, both between modules and between rooms
(each subpackage one room, each top-level module a room of its own, the package's
``__init__`` the room ``rdispy``).  Deferred imports may point up a layer (the command line
starts a client, a client starts the monitor), so between modules they may close a circle; between
rooms they do not, but through the package's ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "rdispy"
#: Rooms that never import the node side.
NOT_WORKER = ("client", "scheduler", "relay", "monitor")
#: The one command-line module that may start a node.
CLI_WORKER = "rdispy.cli.worker"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (or the package, for a name from its __init__)
    line: int
    kind: str  # "top", "deferred" or "typing"

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target} ({self.kind})"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.AST, package: str, known: dict[str, Path]) -> Iterator[str]:
    """The modules one import statement names (a name from a package: its submodule if it is
    one, else the package)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            yield full if full in known else base
    elif (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.split(".")[0] == PACKAGE
        and node.value in known
    ):
        yield node.value  # a module named in a string: imported by name at run time


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """The package's modules that module ``name`` imports, of every kind."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[Import] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_one(stmt, "typing")
                for stmt in child.orelse:
                    visit_one(stmt, kind)
            else:
                visit_one(child, kind)

    def visit_one(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            kind = "typing" if kind == "typing" else "deferred"
        # a module named in a string is imported by name when something runs, not here
        named = "deferred" if isinstance(node, ast.Constant) and kind == "top" else kind
        for target in _targets(node, package, known):
            if target.split(".")[0] == PACKAGE and target != name:
                found.append(Import(name, target, getattr(node, "lineno", 0), named))
        visit(node, kind)

    visit(ast.parse(path.read_text(), str(path)), "top")
    return found


def all_imports(root: Path = ROOT) -> list[Import]:
    known = modules(root)
    return [found for name, path in known.items() for found in imports(name, path, known)]


def room(module: str, root: Path = ROOT) -> str:
    """A subpackage (``rdispy.client``), a top-level module (``rdispy.keys``), or ``rdispy``."""
    parts = module.split(".")
    if len(parts) >= 2 and (root / PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                part.append(other)
                if other == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def edges_of(kinds: tuple[str, ...], by_room: bool, root: Path = ROOT) -> dict[str, set[str]]:
    """Who imports whom, by imports of these kinds, between modules or between rooms."""
    edges: dict[str, set[str]] = {}
    for found in all_imports(root):
        if found.kind not in kinds:
            continue
        source, target = found.source, found.target
        if by_room:
            source, target = room(source, root), room(target, root)
        if source != target:
            edges.setdefault(source, set()).add(target)
    return edges


def _is_worker(module: str) -> bool:
    return module == f"{PACKAGE}.worker" or module.startswith(f"{PACKAGE}.worker.")


def layering_breaks(root: Path = ROOT) -> list[str]:
    """Imports of the node side from where it must not be imported."""
    breaks: set[str] = set()
    for found in all_imports(root):
        if not _is_worker(found.target) or _is_worker(found.source):
            continue
        where = room(found.source, root).split(".")
        sub = where[1] if len(where) > 1 else ""
        if sub in NOT_WORKER or (sub == "cli" and found.source != CLI_WORKER):
            breaks.add(str(found))
        elif not (root / PACKAGE / sub).is_dir():  # a top-level module: below both sides
            breaks.add(str(found))
    return sorted(breaks)


def test_reader_sees_each_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    (package / "worker").mkdir(parents=True)
    (package / "client").mkdir()
    for path in ("__init__.py", "keys.py", "worker/__init__.py", "worker/node.py"):
        (package / path).write_text("")
    (package / "client" / "__init__.py").write_text("")
    (package / "client" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from rdispy import keys\n"
        "from .. import worker\n"
        "if TYPE_CHECKING:\n"
        "    from rdispy.worker.node import X\n"
        "def f():\n"
        "    import rdispy.worker.node\n"
        "    return sys.modules.get('rdispy.worker.node')\n"
    )
    seen = {(i.target, i.kind) for i in all_imports(tmp_path) if i.source == "rdispy.client.a"}
    assert seen == {
        ("rdispy.keys", "top"),
        ("rdispy.worker", "top"),
        ("rdispy.worker.node", "typing"),
        ("rdispy.worker.node", "deferred"),
    }
    assert [i.kind for i in all_imports(tmp_path) if i.line == 8] == ["deferred"]
    assert len(layering_breaks(tmp_path)) == 4
    assert cycles({"a": {"b"}, "b": {"c", "a"}, "c": set()}) == [["a", "b"]]


def test_only_the_node_side_and_cli_worker_import_the_worker() -> None:
    """client/, scheduler/, relay/, monitor/ and the top-level modules never import
    rdispy.worker (of any kind); in rdispy/cli only ``cli/worker.py`` does, to start a node."""
    breaks = layering_breaks()
    assert not breaks, "\n".join(breaks)


def test_the_node_side_imports_no_client_side() -> None:
    breaks = [
        str(found)
        for found in all_imports()
        if _is_worker(found.source) and room(found.target).split(".")[-1] in (*NOT_WORKER, "cli")
    ]
    assert not breaks, "\n".join(breaks)


@pytest.mark.parametrize("by_room", [False, True], ids=["modules", "rooms"])
def test_no_import_cycle(by_room: bool) -> None:
    """No circle of imports that run at import time, between modules or between rooms."""
    assert cycles(edges_of(("top",), by_room)) == []


def test_no_room_cycle_even_by_deferred_imports() -> None:
    """Counting deferred and typing imports too, no circle between rooms but through the
    package's ``__init__``: the facade that imports the client lazily (``rdispy.Executor``)
    and holds ``__version__``."""
    edges = {
        source: {target for target in targets if target != PACKAGE}
        for source, targets in edges_of(("top", "deferred", "typing"), by_room=True).items()
        if source != PACKAGE
    }
    assert cycles(edges) == []


def test_old_paths_of_pickled_names_still_load() -> None:
    """Functions a client sends and results a node returns are pickled by reference to their
    module: a pickle made before the move (naming rdispy.worker.*) loads the same objects."""
    import pickle

    from rdispy import avail, job_context, programs

    moved = [
        ("rdispy.worker.programs", "run_program", programs.run_program),
        ("rdispy.worker.programs", "run_program_collect", programs.run_program_collect),
        ("rdispy.worker.programs", "ProgramRun", programs.ProgramRun),
        ("rdispy.worker.programs", "CreatedFile", programs.CreatedFile),
        ("rdispy.worker.context", "provisional_result", job_context.provisional_result),
        ("rdispy.worker.context", "send_file", job_context.send_file),
        ("rdispy.worker.context", "current", job_context.current),
        ("rdispy.worker.avail", "DispyNodeAvailInfo", avail.DispyNodeAvailInfo),
    ]
    for module, name, value in moved:
        # protocol 0 names a global as "c<module>\n<name>\n": what an older client sent
        old = f"c{module}\n{name}\n.".encode()
        assert pickle.loads(old) is value, f"{module}.{name}"
    result = programs.ProgramRun(0, (programs.CreatedFile("a", b"x", 0o644),))
    assert pickle.loads(pickle.dumps(result)) == result
