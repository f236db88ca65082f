"""The package as users get it: the sdist and the wheel build and pass ``twine check``, hold the
license, README and package data, and the wheel installed into a fresh virtualenv (dependencies
from the package index) runs ``examples/quickstart.py`` outside the repository.  The API
reference (mkdocs + mkdocstrings, from the docstrings) builds with warnings as errors.

The build is isolated (``python -m build``, which gets ``setuptools>=77`` from the index as
``pip install -e .`` did): ``--no-isolation`` would use the virtualenv's own setuptools, which
may be older than the PEP 639 ``license = "MIT"`` that pyproject.toml needs.  It builds the sdist
and then the wheel from the sdist, so the wheel proves the sdist complete.  Tests skip only when
the package index cannot be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - build, a test dependency, brings tomli to Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
#: What setuptools is told to ship besides modules: {"rdispy.monitor": ["*.html"], ...}
PACKAGE_DATA: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
#: Never copied into the build's source tree: not the project's files (paths from the root).
NOT_SOURCE = {".git", ".venv", "build", "dist", "site", "test-artifacts", "bench/results"}


def _not_source(folder: str, names: list[str]) -> set[str]:
    """For ``shutil.copytree``: what of ``folder`` not to copy."""
    relative = Path(folder).resolve().relative_to(ROOT).as_posix()
    return {
        name
        for name in names
        if (f"{relative}/{name}" if relative != "." else name) in NOT_SOURCE
        or name == "__pycache__"
        or name.endswith((".pyc", ".egg-info", "_cache"))
    }


def _run(command: list[str], timeout: float, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, **options
    )


def _skip_if_index_unreachable(tmp: Path, what: str, result: subprocess.CompletedProcess[str]):
    """After ``what`` failed: skip when pip cannot fetch a small package from the index either,
    else fail with ``what``'s output."""
    probe = _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(tmp), "cloudpickle"],
        timeout=90,
    )
    if probe.returncode != 0:
        reason = probe.stderr.strip()[-300:]
        pytest.skip(f"package index unreachable ({what} failed; pip download: {reason})")
    pytest.fail(f"{what} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


def _package_files() -> list[str]:
    """Every file of the rdispy package in the source tree, as paths relative to the root."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / NAME).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from a copy of the source tree (the repository gets no
    build/ or egg-info from it)."""
    tmp = tmp_path_factory.mktemp("dists")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_not_source)
    out = tmp / "dist"
    result = _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], timeout=100)
    if result.returncode != 0:
        _skip_if_index_unreachable(tmp, "python -m build", result)
    sdists = list(out.glob("*.tar.gz"))
    wheels = list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    assert sdists[0].name == f"{NAME}-{VERSION}.tar.gz"
    assert wheels[0].name == f"{NAME}-{VERSION}-py3-none-any.whl"
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_twine_check_strict(dists: dict[str, Path]) -> None:
    result = _run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(dists["sdist"]),
            str(dists["wheel"]),
        ],
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_package_data_is_declared() -> None:
    """Every non-module file of the package matches a package-data pattern of its folder, so
    the sdist and the wheel (checked below) carry it."""
    undeclared = []
    for name in _package_files():
        if name.endswith(".py"):
            continue
        folder, _, base = name.rpartition("/")
        patterns = PACKAGE_DATA.get(folder.replace("/", "."), [])
        if not any(fnmatch(base, pattern) for pattern in patterns):
            undeclared.append(name)
    assert not undeclared, f"add to [tool.setuptools.package-data]: {undeclared}"
    assert f"{NAME}/monitor/page.html" in _package_files()


def test_sdist_contents(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        top = f"{NAME}-{VERSION}/"
        names = {member.name.removeprefix(top) for member in sdist.getmembers() if member.isfile()}
    expected = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "PKG-INFO"}
    expected |= set(_package_files())
    assert expected <= names, sorted(expected - names)


def test_wheel_contents(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"{NAME}-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    missing = set(_package_files()) - names
    assert not missing, sorted(missing)
    assert f"{info}/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith(("tests/", "examples/", "bench/"))]
    assert f"Requires-Python: {PYPROJECT['project']['requires-python']}" in metadata
    assert "License-Expression: MIT" in metadata
    assert re.search(r"^rdispy = rdispy\.cli:main$", entry_points, re.M), entry_points


def test_supported_versions_are_consistent() -> None:
    """requires-python, the classifiers and README's top say the same; README no longer tells
    anyone to install rdispy from the package index."""
    floor = PYPROJECT["project"]["requires-python"]
    assert floor.startswith(">="), floor
    minimum = tuple(int(part) for part in floor[2:].split("."))
    classified = [
        tuple(int(part) for part in c.rsplit(" :: ", 1)[1].split("."))
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert classified and min(classified) == minimum, classified
    assert (sys.version_info.major, sys.version_info.minor) >= minimum
    readme = (ROOT / "README.md").read_text()
    top = readme.split("```", 1)[0]  # before the first command block
    assert f"CPython {floor[2:]} or newer" in top and f'requires-python = "{floor}"' in top
    assert "Linux" in top and "macOS" in top and "not on PyPI" in top
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        assert not re.search(r"pip install rdispy\b", path.read_text()), path


@pytest.mark.timeout(240)
def test_quickstart_runs_from_the_installed_wheel(dists: dict[str, Path], tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # outside the repository, with nothing of it (nor of this virtualenv) on the paths
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.py", run / "quickstart.py")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "RDISPY_")) and name not in ("VIRTUAL_ENV", "PATH")
    }
    env["PATH"] = os.pathsep.join(
        [str(env_dir / "bin")]
        + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and str(ROOT) not in p]
    )
    installed = _run(
        [str(python), "-m", "pip", "install", "--quiet", str(dists["wheel"])],
        timeout=180,
        cwd=run,
        env=env,
    )
    if installed.returncode != 0:
        _skip_if_index_unreachable(tmp_path, "pip install of the wheel", installed)

    where = _run(
        [
            str(python),
            "-c",
            "import rdispy, sysconfig; print(rdispy.__file__); "
            "print(sysconfig.get_paths()['purelib'])",
        ],
        timeout=60,
        cwd=run,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    module_file, purelib = (Path(line) for line in where.stdout.split())
    assert module_file == purelib / NAME / "__init__.py", where.stdout
    assert purelib.is_relative_to(env_dir) and not module_file.is_relative_to(ROOT)

    result = _run([str(python), "quickstart.py"], timeout=90, cwd=run, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str([pow(i, i) for i in range(10)]), result.stdout
    assert re.fullmatch(r"12 squared is 144, computed on \S+ by node \S+ pid \d+", lines[1])
    assert lines[2] == "17984 primes below 200,000"
    assert lines[3] == "remote error re-raised here: ValueError(math domain error)"
    assert re.fullmatch(r"done in \d+\.\d\ds", lines[4]) and len(lines) == 5, result.stdout


def test_api_reference_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = _run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        timeout=100,
        cwd=tmp_path,  # the configuration's paths are relative to its own folder
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    pages = {
        "executor": [
            "rdispy.Executor",
            "rdispy.Executor.submit",
            "rdispy.Executor.map",
            "rdispy.RemoteFuture",
            "rdispy.RemoteFuture.result",
            "rdispy.updates",
            "rdispy.progress.progress",
            "rdispy.recover",
        ],
        "jobcluster": [
            "rdispy.JobCluster",
            "rdispy.JobCluster.submit",
            "rdispy.SharedJobCluster",
            "rdispy.DispyJob",
            "rdispy.DispyNode",
            "rdispy.NodeAllocate",
        ],
        "errors": [
            "rdispy.errors.RdispyError",
            "rdispy.errors.SerializationError",
            "rdispy.errors.WorkerCrashed",
            "rdispy.errors.ExecutorBroken",
        ],
        "worker": ["rdispy.provisional_result", "rdispy.send_file"],
    }
    for page, ids in pages.items():
        html = (site / page / "index.html").read_text()
        missing = [name for name in ids if f'id="{name}"' not in html]
        assert not missing, (page, missing)
    # docstrings made it into the pages, and the CLI's --help into the worker page
    assert (
        "Run callables on the cores of this machine" in (site / "executor/index.html").read_text()
    )
    worker = (site / "worker" / "index.html").read_text()
    for command in ("worker", "server", "scheduler", "submit", "relay", "status", "monitor"):
        assert f"Usage: rdispy {command} [OPTIONS]" in worker, command
    assert "Installing on other machines" in (site / "index.html").read_text()  # README included
