"""Real servers that tests start: skip locally when a program is missing, fail under CI.

A skipped test proves nothing in CI (.ci/run installs every package the tests name), so the
same absence that skips on a developer's machine is a failure when ``CI=true``; the skip
names the Debian package to install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def missing_programs(programs: Mapping[str, str]) -> dict[str, str]:
    """The programs (name -> Debian package) found neither on PATH nor in the sbin folders."""
    return {
        name: package
        for name, package in programs.items()
        if not (shutil.which(name) or shutil.which(name, path=SBIN))
    }


def require_programs(programs: Mapping[str, str]) -> None:
    """Skip the test (fail it under CI) unless every program is installed."""
    missing = missing_programs(programs)
    if not missing:
        return
    packages = " ".join(sorted(set(missing.values())))
    message = f"needs {', '.join(sorted(missing))}: apt-get install --no-install-recommends "
    message += packages
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_module(module: str, install: str) -> None:
    """Skip the test (fail it under CI) unless the Python module imports."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    message = f"needs the Python module {module}: {install}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
