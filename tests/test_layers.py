"""The layering of docs/architecture.md, tested rather than remembered.

- the science packages are pure: they import no ``operando.io``, ``operando.config``,
  ``pipelines`` or ``prefect``;
- ``operando.io`` only reads and writes: it imports no ``operando.config``, ``pipelines``
  or science package;
- ``pipelines/`` only wires: nothing there opens, reads or writes a file itself;
- no function in ``src/`` or ``pipelines/`` is longer than 150 lines, and the confocal
  adapter stays wiring (at most 200 lines).

Read with :mod:`ast` (nothing is imported or run), so a failure names the file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "operando"
PIPELINES = REPO / "pipelines"

SCIENCE = ("xrd", "xanes", "echem", "kinetics", "confocal", "report")
NOT_IN_SCIENCE = ("operando.io", "operando.config", "pipelines", "prefect")
NOT_IN_IO = ("operando.config", "pipelines", "prefect",
             *(f"operando.{p}" for p in (*SCIENCE, "simulate")))

#: calls that touch a file: builtins, pathlib methods and the readers/writers of the
#: libraries the project uses (h5py, xarray, numpy, fabio, matplotlib). ``rename`` and
#: ``replace`` are left out: xarray and str share those names.
FILE_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "File",
              "open_dataset", "open_mfdataset", "open_zarr", "open_datatree", "load_dataset",
              "to_netcdf", "to_zarr", "loadtxt", "savetxt", "genfromtxt", "fromfile", "tofile",
              "savefig", "unlink", "mkdir", "rmtree"}


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports (absolute names; ``from . import x`` resolved)."""
    package = ".".join(path.relative_to(REPO / "src").with_suffix("").parts[:-1]) \
        if path.is_relative_to(REPO / "src") else "pipelines"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:  # `from operando import io` imports operando.io
                yield node.lineno, f"{mod}.{a.name}"


def _offences(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for p in paths:
        for line, mod in _imports(p):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                out.append(f"{p.relative_to(REPO)}:{line} imports {mod}")
    return sorted(set(out))


def test_the_packages_exist() -> None:
    """A renamed package must not make the checks below vacuous."""
    for pkg in (*SCIENCE, "io"):
        assert _modules(SRC / pkg), f"src/operando/{pkg}/ holds no module"
    assert _modules(PIPELINES)


@pytest.mark.parametrize("package", SCIENCE)
def test_science_is_pure(package: str) -> None:
    bad = _offences(_modules(SRC / package), NOT_IN_SCIENCE)
    assert not bad, "science imports io/config/pipelines/prefect:\n" + "\n".join(bad)


def test_io_is_a_shell() -> None:
    bad = _offences(_modules(SRC / "io"), NOT_IN_IO)
    assert not bad, "io imports config/pipelines/science:\n" + "\n".join(bad)


def test_pipelines_open_no_file() -> None:
    bad = []
    for p in _modules(PIPELINES):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else \
                    f.attr if isinstance(f, ast.Attribute) else None
                if name in FILE_CALLS:
                    bad.append(f"{p.relative_to(REPO)}:{node.lineno} calls {name}()")
    assert not bad, "pipelines/ touches files itself (call an operando.io function):\n" \
        + "\n".join(bad)


def test_functions_are_short() -> None:
    long = []
    for p in [*_modules(SRC), *_modules(PIPELINES)]:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 150:
                    long.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "functions over 150 lines:\n" + "\n".join(long)


def test_confocal_adapter_is_wiring() -> None:
    n = len((PIPELINES / "confocal.py").read_text(encoding="utf-8").splitlines())
    assert n <= 200, f"pipelines/confocal.py has {n} lines; its science belongs in operando"
