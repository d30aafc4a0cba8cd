"""``make lint``'s checks beyond ruff, over the ``citywok`` namespace as the wheel installs it.

    python hack/lint.py imports     import-linter contracts (pyproject.toml)
    python hack/lint.py types       mypy on the package
    python hack/lint.py sizes       no module over 400 lines, no function over 50

import-linter and mypy find a package's modules by walking its folder, but ``citywok.matcher`` lives
in ``matcher/``, not ``citywok/matcher/`` (pyproject.toml's package-dir map). So the installed tree is
built out of symlinks in a temporary folder and checked there: the same files, arranged as installed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def build_tree(dest: Path) -> Path:
    """``dest/citywok`` holding ``citywok/``'s entries and a link per mapped sub-package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapped = config["tool"]["setuptools"]["package-dir"]
    pkg = dest / "citywok"
    pkg.mkdir()
    for entry in (ROOT / "citywok").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, pkg / entry.name)
    for name, folder in mapped.items():
        os.symlink(ROOT / folder, pkg / name.removeprefix("citywok."))
    return pkg


def lint_imports(tree: Path) -> int:
    from importlinter.cli import lint_imports as run

    os.chdir(tree)  # import-linter puts the working folder first on the path
    sys.path.insert(0, str(tree))
    return run(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)


def types(tree: Path) -> int:
    env = {**os.environ, "MYPYPATH": str(tree)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "citywok"]
    return subprocess.run(cmd, cwd=tree, env=env, check=False).returncode


def package_files() -> Iterator[Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for folder in ["citywok", *config["tool"]["setuptools"]["package-dir"].values()]:
        yield from sorted((ROOT / folder).rglob("*.py"))


def sizes(_tree: Path) -> int:
    """Modules and functions past the limits, one line each."""
    bad = []
    for path in package_files():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            bad.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    bad.append(f"{rel}:{node.lineno}: {node.name} is {n} lines (at most {MAX_FUNCTION_LINES})")
    print("\n".join(bad) or "sizes: every module and function within the limits")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    checks = {"imports": lint_imports, "types": types, "sizes": sizes}
    if len(argv) != 1 or argv[0] not in checks:
        print(f"usage: lint.py {'|'.join(checks)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        build_tree(Path(tmp))
        return checks[argv[0]](Path(tmp))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
