"""What the identity stages (`addon_identity`) wait on: the Kerberos acceptor, the Basic
password checker and the directory, each bounded (a small thread pool that refuses at once
when full, and a deadline). Built from plain values; raises ValueError with a message IT
can act on. No mitmproxy imports.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditproxy.decide.auth import Outcome
from auditproxy.decide.directory import Directory, DirectorySettings, Nesting
from auditproxy.decide.offload import Busy, Offload
from auditproxy.options import parse_interval
from auditproxy.policy.model import AuthMethod

QUEUE_PER_WORKER = 8  # checks that may wait per worker; beyond that: busy, at once
BasicValidator = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class AuthOptions:
    keytab: str = ""
    service: str = ""
    replay_cache: str = ""
    timeout: str = "2"
    workers: int = 4


class IdentityServices:
    def __init__(self) -> None:
        self.acceptor: Any = None  # decide.negotiate.Acceptor (the kerberos extra)
        self.basic: BasicValidator | None = None
        self.basic_pool: Offload | None = None
        self.directory: Directory | None = None
        self.timeout = 2.0

    def set_auth(self, options: AuthOptions, basic: BasicValidator | None) -> None:
        try:
            timeout = parse_interval(options.timeout)
        except ValueError:
            raise ValueError(
                f"auditproxy_auth_timeout must be seconds, not {options.timeout!r}"
            ) from None
        if options.workers < 1:
            raise ValueError("auditproxy_auth_workers must be 1 or more")
        queue = options.workers * QUEUE_PER_WORKER
        acceptor = None
        if options.keytab:
            try:
                from auditproxy.decide.negotiate import Acceptor
            except ImportError:
                raise ValueError(
                    "auditproxy_keytab: Kerberos needs the kerberos extra: pip install "
                    "'auditproxy[kerberos]' (it builds gssapi: gcc and libkrb5-dev)"
                ) from None
            acceptor = Acceptor(
                options.keytab,
                options.service or None,
                replay_cache=options.replay_cache,
                workers=options.workers,
                queue=queue,
                timeout=timeout,
            )
        self.close_auth()
        self.acceptor, self.basic, self.timeout = acceptor, basic, timeout
        self.basic_pool = Offload("basic-auth", options.workers, queue)

    def set_directory(self, settings: DirectorySettings | None) -> None:
        directory = Directory(settings) if settings is not None else None
        if self.directory is not None:
            self.directory.close()
        self.directory = directory

    @property
    def auth_pending(self) -> int:
        pending = self.acceptor.pending if self.acceptor is not None else 0
        return pending + (self.basic_pool.pending if self.basic_pool is not None else 0)

    async def validate(self, scheme: AuthMethod, credential: str) -> tuple[Outcome, str | None]:
        """Check one credential off the event loop: (outcome, the proven principal)."""
        if scheme is AuthMethod.NEGOTIATE:
            if self.acceptor is None:
                return Outcome.ERROR, None
            result = await self.acceptor.authenticate(credential)
            return Outcome(result.outcome.value), result.principal
        user, password = basic_credential(credential)
        basic, pool = self.basic, self.basic_pool
        if user is None or password is None:
            return Outcome.BAD_TOKEN, None
        if basic is None or pool is None:
            return Outcome.ERROR, None
        try:
            ok = await pool.run(lambda: bool(basic(user, password)), self.timeout)
        except Busy:
            return Outcome.BUSY, None
        except TimeoutError:
            return Outcome.TIMEOUT, None
        except Exception:
            return Outcome.ERROR, None
        return (Outcome.OK, user) if ok else (Outcome.INVALID, None)

    def close_auth(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
        if self.basic_pool is not None:
            self.basic_pool.close()
        self.acceptor = self.basic_pool = None

    def close(self) -> None:
        self.close_auth()
        self.set_directory(None)


def basic_credential(credential: str) -> tuple[str | None, str | None]:
    """(user, password) of a `Basic` credential, or (None, None)."""
    _, _, data = credential.strip().partition(" ")
    try:
        text = base64.b64decode(data.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None
    user, colon, password = text.partition(":")
    return (user, password) if colon and user else (None, None)


def directory_settings(values: dict[str, Any]) -> DirectorySettings | None:
    """The directory's settings from the `auditproxy_directory*` options (by name, without
    the prefix); None when no server is named."""
    if not values["directory"]:
        return None
    password = None
    if values["directory_password_file"]:
        path = Path(values["directory_password_file"]).expanduser()
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    extra: dict[str, Any] = {}
    if values["directory_user_filter"]:
        extra["user_filter"] = values["directory_user_filter"]
    try:
        nesting = Nesting(values["directory_nesting"])
        ttl = float(values["directory_cache_ttl"])
    except ValueError:
        raise ValueError(
            "auditproxy_directory_nesting is auto, in_chain or iterative, and "
            "auditproxy_directory_cache_ttl seconds"
        ) from None
    return DirectorySettings(
        url=values["directory"],
        base_dn=values["directory_base"],
        bind_dn=values["directory_bind"] or None,
        bind_password=password,
        group_base_dn=values["directory_group_base"] or None,
        nesting=nesting,
        start_tls=values["directory_starttls"],
        ca_file=values["directory_ca"] or None,
        timeout=parse_interval(values["directory_timeout"]),
        cache_ttl=ttl,
        failure_ttl=min(30.0, ttl),
        **extra,
    )
