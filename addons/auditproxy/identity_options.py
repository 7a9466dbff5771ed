"""The options of who people are (issue #14): Kerberos proxy authentication, Basic behind
the policy's switch, and directory groups. Name, type, default, help; read by
`addon_identity.IdentityServices`. The policy says whether to authenticate (`auth`) and
what groups change (`groups`); these say with what. Pure.
"""

from __future__ import annotations

from typing import Any

REPLAY_CACHE_NAME = "auditproxy-krb5-replay.rcache2"  # in CONFDIR unless given

IDENTITY_OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    (
        "auditproxy_keytab",
        str,
        "",
        "Keytab of the proxy's service principal, for Kerberos proxy authentication "
        "(Negotiate) when the policy's auth lists negotiate. Readable by the proxy only; read "
        "for every ticket, so a rotated keytab needs no restart (deploy/kerberos/README.md).",
    ),
    (
        "auditproxy_service_principal",
        str,
        "",
        "The service principal tickets must be for, e.g. HTTP/proxy.example.gc.ca (the realm "
        "is optional). Empty: any principal in the keytab.",
    ),
    (
        "auditproxy_replay_cache",
        str,
        "",
        "File where accepted Kerberos authenticators are remembered for the clock-skew "
        f"window, so that a replayed token is refused. Default: CONFDIR/{REPLAY_CACHE_NAME}.",
    ),
    (
        "auditproxy_auth_timeout",
        str,
        "2",
        "Seconds a credential check (Kerberos ticket, Basic password) may take before the "
        "request is treated as failed (the policy's auth: on_failure).",
    ),
    (
        "auditproxy_auth_workers",
        int,
        4,
        "Threads that check credentials off the event loop; 8 more checks per thread may "
        "wait, beyond that a check fails at once (busy).",
    ),
    (
        "auditproxy_basic_auth",
        str,
        "",
        "Where Basic passwords are checked when the policy's auth lists basic: "
        "'@/path/htpasswd', 'ldap[s]:...' or 'user:pass', as mitmproxy's proxyauth takes them "
        "(which cannot be used together with the policy's auth).",
    ),
    (
        "auditproxy_directory",
        str,
        "",
        "LDAP server for people's groups (the policy's groups): ldap://HOST or ldaps://HOST "
        "(name it by DNS: its certificate is checked). Empty: nobody has groups.",
    ),
    (
        "auditproxy_directory_base",
        str,
        "",
        "Base DN where people are searched, e.g. DC=example,DC=gc,DC=ca.",
    ),
    (
        "auditproxy_directory_group_base",
        str,
        "",
        "Base DN where groups are searched (default: the base DN); the OU holding the "
        "policy's groups keeps Active Directory's nested look-up cheap.",
    ),
    (
        "auditproxy_directory_bind",
        str,
        "",
        "DN of the read-only account the proxy binds with (empty: anonymous).",
    ),
    (
        "auditproxy_directory_password_file",
        str,
        "",
        "File holding that account's password (readable by the proxy only).",
    ),
    (
        "auditproxy_directory_user_filter",
        str,
        "",
        "Filter finding a person, with {user}, {principal} and {realm} (each escaped). "
        "Default (uid={user}); Active Directory: (&(objectClass=user)(|(userPrincipalName="
        "{principal})(sAMAccountName={user}))).",
    ),
    (
        "auditproxy_directory_nesting",
        str,
        "auto",
        "Nested groups: auto (Active Directory resolves them, detected; otherwise a bounded "
        "walk), in_chain or iterative.",
    ),
    (
        "auditproxy_directory_starttls",
        bool,
        False,
        "Use StartTLS on ldap:// (the certificate is checked).",
    ),
    (
        "auditproxy_directory_ca",
        str,
        "",
        "CA file for the directory's certificate (default: the system's CAs).",
    ),
    (
        "auditproxy_directory_timeout",
        str,
        "2",
        "Seconds a group look-up may take; past it the person has no groups for now.",
    ),
    (
        "auditproxy_directory_cache_ttl",
        str,
        "300",
        "Seconds a person's groups are remembered (a group change applies within this).",
    ),
)
