"""Checks `auditproxy run` makes before it starts mitmproxy. Pure: stat calls, no mitmproxy.

The proxy's CA private key can impersonate every site to every browser that trusts the
CA, and the pseudonym key turns every `user.hash` in the log back into a name. Either one
readable by another account on the proxy host is a breach waiting to happen, so the proxy
refuses to start rather than run with it, and says how to fix it.

mitmproxy creates its CA with owner-only permissions (umask 077); these checks catch a
key that was copied in, restored from a backup or unpacked from a container image with
looser ones.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFAULT_CONFDIR = "~/.mitmproxy"
# mitmproxy's files that hold the CA's private key (PEM, and PKCS#12 for Windows).
CA_KEY_FILES = ("mitmproxy-ca.pem", "mitmproxy-ca.p12")
PSEUDONYM_KEY_FILE = "auditproxy-pseudonym.key"  # the default in CONFDIR (see runtime.py)
_GROUP_OR_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def check_secret_file(path: Path, what: str) -> str | None:
    """A message when `path` exists and group or others have any access to it, else None.

    Any bit counts, not only "read": a group-writable key can be replaced by a key that
    someone else holds. A file that does not exist is not a problem here (mitmproxy and the
    add-on create theirs with mode 0600); one that cannot be inspected is reported.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot check {what} {path}: {e.strerror or e}"
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OR_OTHERS:
        return (
            f"{what} {path} is accessible by group or others (mode {mode:04o}); "
            f"only the proxy's account may read it. Fix with: chmod 600 {path}"
        )
    return None


def check_ca_key(confdir: str | Path) -> str | None:
    """The first problem with the CA private key files in mitmproxy's `confdir`, or None."""
    folder = Path(confdir).expanduser()
    for name in CA_KEY_FILES:
        problem = check_secret_file(folder / name, "the proxy's CA private key")
        if problem:
            return problem
    return None


def check_pseudonym_key(path: str | Path) -> str | None:
    return check_secret_file(Path(path).expanduser(), "the pseudonym key")


def last_set_option(setoptions: Iterable[str], name: str) -> str | None:
    """The value of the last `--set NAME=VALUE` for `name` (the one mitmproxy applies)."""
    value = None
    for setting in setoptions:
        key, sep, rest = setting.partition("=")
        if sep and key.strip() == name:
            value = rest
    return value


def run_checks(
    confdir: str | None, pseudonym_key: str | None, setoptions: Sequence[str] = ()
) -> list[str]:
    """Every reason `auditproxy run` must not start, from its own flags and `--set`s.

    `--set confdir=...` and `--set auditproxy_pseudonym_key=...` come after the flags on
    mitmproxy's command line and win there, so they win here too.
    """
    folder = last_set_option(setoptions, "confdir") or confdir or DEFAULT_CONFDIR
    key = last_set_option(setoptions, "auditproxy_pseudonym_key") or pseudonym_key
    key_path = Path(key) if key else Path(folder).expanduser() / PSEUDONYM_KEY_FILE
    problems = [check_ca_key(folder), check_pseudonym_key(key_path)]
    return [p for p in problems if p]
