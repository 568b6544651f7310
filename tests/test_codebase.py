"""The codebase keeps its own rules: layers, lint, types, and each package's public surface."""

from __future__ import annotations

import importlib
import pathlib
import pkgutil
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).parent.parent
PACKAGES = ("nebula", "controllers", "api", "nodes", "bots")
BIN = pathlib.Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_layers_point_one_way_and_the_core_imports_no_framework() -> None:
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted_and_lint_free() -> None:
    checked = _run(str(BIN / "ruff"), "check", ".")
    formatted = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert checked.returncode == 0, checked.stdout
    assert formatted.returncode == 0, formatted.stdout


def test_the_core_controllers_and_runtimes_are_typed_strictly() -> None:
    packages = [arg for name in PACKAGES for arg in ("-p", name)]
    result = _run(sys.executable, "-m", "mypy", *packages)
    assert result.returncode == 0, result.stdout


def _modules() -> list[types.ModuleType]:
    found = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names = [info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.")]
        found += [importlib.import_module(n) for n in [package, *names] if "__main__" not in n]
    return found


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_every_public_name_is_in_all_and_all_names_exist(module: types.ModuleType) -> None:
    exported = getattr(module, "__all__", None)
    if exported is None:
        # Packages that only hold subpackages or docstrings need no surface of their own.
        assert not any(
            getattr(value, "__module__", None) == module.__name__
            for name, value in vars(module).items()
            if not name.startswith("_") and isinstance(value, type | types.FunctionType)
        ), f"{module.__name__} defines public names but has no __all__"
        return
    missing = [name for name in exported if not hasattr(module, name)]
    # Public classes and functions defined here (not imported) must be exported.
    defined = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, type | types.FunctionType)
        and getattr(value, "__module__", None) == module.__name__
    ]
    unexported = sorted(set(defined) - set(exported))
    assert not missing, f"{module.__name__}.__all__ names what does not exist: {missing}"
    assert not unexported, f"{module.__name__} does not export {unexported}"
