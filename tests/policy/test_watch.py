from __future__ import annotations

import os

from auditproxy.policy.watch import FileWatch


def test_change_reported_once_after_it_holds_still(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a")
    watch = FileWatch(str(path))
    assert watch.poll() is False
    path.write_text("bb")
    assert watch.poll() is False  # just changed: wait one poll
    assert watch.poll() is True
    assert watch.poll() is False


def test_write_in_progress_is_not_reported(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a")
    watch = FileWatch(str(path))
    path.write_text("b" * 10)
    assert watch.poll() is False
    path.write_text("b" * 20)  # still being written
    assert watch.poll() is False
    assert watch.poll() is True


def test_rename_over_and_removal(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a")
    watch = FileWatch(str(path))
    tmp = tmp_path / "new"
    tmp.write_text("a")  # same size and content, new inode
    os.replace(tmp, path)
    assert [watch.poll(), watch.poll()] == [False, True]
    path.unlink()
    assert [watch.poll(), watch.poll()] == [False, True]
    assert watch.missing()


def test_force(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a")
    watch = FileWatch(str(path))
    watch.force()
    assert watch.poll() is True
    assert watch.poll() is False
