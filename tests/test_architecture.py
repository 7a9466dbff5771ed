"""The layout's rules (docs/architecture.md), checked on the source: pure folders import
nothing from mitmproxy, each folder imports only the folders before it in the pipeline,
one import style, and no module grows past about 300 lines without saying why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support.paths import REPO

PACKAGE = REPO / "addons" / "auditproxy"
# The pipeline's folders in order; each may import itself and those before it.
FOLDERS = ("policy", "decide", "notice", "sinks")
# Top-level modules that may import mitmproxy: the hooks, what they run on, the command.
MITMPROXY_ALLOWED = {
    "addon.py",
    "addon_admit.py",
    "addon_connections.py",
    "addon_groups.py",
    "addon_identity.py",
    "stages.py",
    "runtime.py",
    "runner.py",
}
MAX_LINES = 300


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, level) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


def folder_of(path: Path) -> str | None:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else None


def test_there_are_modules_in_every_folder() -> None:
    for folder in FOLDERS:
        assert len(list((PACKAGE / folder).glob("*.py"))) >= 3, folder


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_import_nothing_from_mitmproxy(path: Path) -> None:
    if path.relative_to(PACKAGE).as_posix() in MITMPROXY_ALLOWED:
        return
    for line, module, _ in imported(path):
        assert module.split(".")[0] != "mitmproxy", f"{path.name}:{line} imports {module}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_folders_import_only_earlier_stages_with_absolute_imports(path: Path) -> None:
    folder = folder_of(path)
    allowed = set(FOLDERS[: FOLDERS.index(folder) + 1]) if folder in FOLDERS else set(FOLDERS)
    for line, module, level in imported(path):
        assert level == 0, f"{path.name}:{line}: relative import; write auditproxy.{module}"
        parts = module.split(".")
        if parts[0] != "auditproxy" or len(parts) < 2:
            continue
        if parts[1] in FOLDERS:
            assert parts[1] in allowed, f"{path.name}:{line}: {folder}/ may not import {module}"
        elif folder is not None:
            # Inside a folder, only the shared per-flow object and the version are allowed.
            assert parts[1] in {"flowstate"} or module == "auditproxy", (
                f"{path.name}:{line}: {folder}/ imports the top-level {module}"
            )


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_long_modules_say_why_at_the_top(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) <= MAX_LINES:
        return
    head = "\n".join(lines[:3])
    assert "Over 300 lines:" in head, (
        f"{path.relative_to(PACKAGE)} has {len(lines)} lines; split it, or say why in its "
        "first lines ('Over 300 lines: ...')"
    )
