"""Reading a file without waiting on it (`policy.files`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from auditproxy.policy.files import FileRefused, read_regular, read_regular_file, regular_or_absent
from auditproxy.policy.load import load_policy
from support.paths import POLICIES


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"x" * 5000)
    assert read_regular_file(path) == b"x" * 5000
    data, st = read_regular(path, 5000)
    assert data == b"x" * 5000 and st.st_size == 5000


def test_a_fifo_is_refused_at_once_without_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(FileRefused, match="is a FIFO, not a regular file") as info:
        read_regular_file(fifo)
    assert time.monotonic() - started < 1
    assert info.value.strerror == str(info.value)  # what the callers print
    with pytest.raises(FileRefused):
        regular_or_absent(fifo)


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")]
)
def test_devices_and_directories_are_refused(path: str, kind: str) -> None:
    with pytest.raises(OSError, match=kind if path != "/" else "directory"):
        read_regular_file(path)


def test_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"y" * 1001)
    with pytest.raises(FileRefused, match="1001 bytes, over the limit of 1000 bytes"):
        read_regular_file(path, 1000)


def test_absent_is_fine_for_files_that_are_created(tmp_path: Path) -> None:
    regular_or_absent(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "nothing")


def test_auditproxy_check_does_not_wait_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"cannot read policy: .* is a FIFO"):
        load_policy(fifo)
    assert load_policy(POLICIES / "small.yaml").name == "Test Policy"
