"""The codebase keeps its own rules: layers, lint, types, and each package's public surface."""

from __future__ import annotations

import importlib
import pathlib
import pkgutil
import re
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


# Where reading the environment is the point: secrets by name (NEBULA_SECRET_*, the embedded
# runtime's stand-in for Kubernetes Secrets), a probe's view of the machine, Windows' drive.
_READS_THE_ENVIRONMENT_ON_PURPOSE = {
    "nebula/settings.py",
    "nebula/secrets.py",
    "nebula/hardware/endpoints.py",
    "nebula/hardware/system.py",
}
_ENVIRONMENT = re.compile(r"os\.environ|os\.getenv|os\.putenv")


def test_configuration_is_read_in_one_place_and_the_code_never_writes_the_environment() -> None:
    # Issue 14.6: four modules read NEBULA_* directly, and the core set XDG_RUNTIME_DIR.
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in _READS_THE_ENVIRONMENT_ON_PURPOSE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _ENVIRONMENT.search(line)
    ]
    assert found == [], "read the environment through nebula.settings.Settings:\n" + "\n".join(
        found
    )


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
