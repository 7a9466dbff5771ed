"""The `auditproxy` command: run | check | classify | pseudonym | verify-log."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from auditproxy import __version__
from auditproxy.policy.load import DEFAULT_POLICY, load_policy
from auditproxy.policy.model import PolicyError

DEFAULT_LISTEN_HOST = "127.0.0.1"  # not an open proxy out of the box
DEFAULT_LISTEN_PORT = 8080
DEFAULT_METRICS_PORT = 9464


def _default_policy() -> str:
    return str(DEFAULT_POLICY)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditproxy",
        description="An egress proxy that audits and monitors rather than denies.",
    )
    parser.add_argument("--version", action="version", version=f"auditproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the proxy with the auditproxy add-on")
    run.add_argument("--policy", metavar="FILE", help="policy file (default: the example)")
    run.add_argument("--listen-host", default=DEFAULT_LISTEN_HOST, metavar="HOST")
    run.add_argument("--listen-port", type=int, default=DEFAULT_LISTEN_PORT, metavar="PORT")
    run.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        metavar="PORT",
        help=f"/metrics and /healthz (default {DEFAULT_METRICS_PORT}; 0 turns them off)",
    )
    run.add_argument(
        "--state",
        metavar="FILE|URL",
        help="daily notice state: a SQLite file, or redis://HOST:PORT/DB shared by instances",
    )
    run.add_argument("--confdir", metavar="DIR", help="mitmproxy's folder for its CA")
    run.add_argument(
        "--access-log", default="-", metavar="FILE", help="JSON access log ('-': stdout)"
    )
    run.add_argument("--pseudonym-key", metavar="FILE", help="key for user pseudonyms")
    run.add_argument(
        "--set",
        dest="setoptions",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any mitmproxy option, e.g. mode=upstream:http://HOST:PORT (repeatable)",
    )

    check = sub.add_parser("check", help="validate policy files; FILE:LINE: for each problem")
    check.add_argument("files", nargs="+", metavar="FILE")

    classify = sub.add_parser("classify", help="show what the policy says about URLs (JSON)")
    classify.add_argument("--policy", metavar="FILE", help="policy file (default: the example)")
    classify.add_argument(
        "--user", metavar="NAME", help="for this person (a user name or Kerberos principal)"
    )
    classify.add_argument(
        "--groups",
        metavar="GROUP,...",
        default="",
        help="the person's directory groups (comma-separated): their policy group applies",
    )
    classify.add_argument("urls", nargs="+", metavar="URL")

    pseudonym = sub.add_parser(
        "pseudonym", help="compute user pseudonyms under a key (for investigators)"
    )
    pseudonym.add_argument("--key", required=True, metavar="FILE", help="the pseudonym key")
    pseudonym.add_argument(
        "--address",
        action="store_true",
        help="the NAMEs are client addresses (people identified by their address)",
    )
    pseudonym.add_argument(
        "--case",
        choices=("insensitive", "sensitive"),
        default="insensitive",
        help="how the policy compares names (identity: case); default insensitive",
    )
    pseudonym.add_argument("names", nargs="+", metavar="NAME")

    verify = sub.add_parser(
        "verify-log",
        help="check access-log files (plain or .gz) against their sequence and hash chain",
        description="Exit 0: no problem found; 1: problems (FILE:LINE: KIND: reason each); "
        "2: usage (no key, unreadable file). See docs/log-chain.md for what it cannot see.",
    )
    verify.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="FILE",
        help="the proxy's pseudonym key file; repeat for logs written under older keys",
    )
    verify.add_argument("--json", action="store_true", help="one JSON report on stdout")
    verify.add_argument("files", nargs="+", metavar="FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "run": cmd_run,
        "check": cmd_check,
        "classify": cmd_classify,
        "verify-log": cmd_verify_log,
    }.get(args.command, cmd_pseudonym)
    return handler(args)


# ---------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    failed = False
    for file in args.files:
        try:
            policy = load_policy(file)
        except PolicyError as e:
            failed = True
            for problem in e.problems:
                print(problem.format(file), flush=True)
            continue
        for warning in policy.warnings:  # valid, but worth a word (exit status 0)
            print(warning.format(file), flush=True)
        domains = sum(len(s.domains) for s in policy.sites)
        print(
            f"{file}: ok: {policy.name!r}, {len(policy.categories)} categories, "
            f"{len(policy.sites)} sites, {domains} domains, sha256 {policy.sha256[:12]}"
        )
    return 1 if failed else 0


def cmd_classify(args: argparse.Namespace) -> int:
    file = args.policy or _default_policy()
    try:
        policy = load_policy(file)
    except PolicyError as e:
        for problem in e.problems:
            print(problem.format(file), file=sys.stderr)
        return 1
    from auditproxy.decide.explain import Explainer

    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    explain = Explainer(policy, args.user, groups)
    failed = False
    for url in args.urls:
        try:
            record = explain(url)
        except ValueError as e:
            failed = True
            print(json.dumps({"url": url, "error": str(e)}), flush=True)
            continue
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    from auditproxy.decide.identity import (
        ADDRESS_PREFIX,
        Pseudonymizer,
        canonical_address,
        load_key,
    )
    from auditproxy.decide.names import normalize_name

    try:
        pseudonymize = Pseudonymizer(load_key(args.key))
    except ValueError as e:
        print(f"auditproxy pseudonym: {e}", file=sys.stderr)
        return 1
    for given in args.names:
        # Keyed exactly as the proxy keys it: a normalised name, or a typed address.
        if args.address:
            name = canonical_address(given.strip())
            key = ADDRESS_PREFIX + name
        else:
            name = key = normalize_name(given.strip(), args.case == "insensitive")
        # The access log's own field names, so an investigator can match records as they are.
        fields = {
            "user.name": name,
            "user.hash": pseudonymize(key),
            "labels.user_key_id": pseudonymize.key_id,
        }
        print(json.dumps(fields))
    return 0


def cmd_verify_log(args: argparse.Namespace) -> int:
    """0: no problem; 1: problems; 2: usage (no key, a key or file that cannot be read)."""
    from auditproxy.decide.identity import load_key
    from auditproxy.sinks.seal import derive_key
    from auditproxy.sinks.verify import verify_files

    def usage(message: str) -> int:
        print(f"auditproxy verify-log: {message}", file=sys.stderr)
        return 2

    if not args.key:
        return usage("no key: give --key FILE (the proxy's pseudonym key file)")
    keys = []
    for key_file in args.key:
        try:
            keys.append(derive_key(load_key(key_file)))
        except ValueError as e:
            return usage(str(e))
    paths: list[str] = []
    seen: set[str] = set()
    for path in args.files:
        real = os.path.realpath(path)
        if real in seen:
            continue  # one file named twice is not a duplicated file
        seen.add(real)
        paths.append(path)
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            return usage(f"cannot read {path}")
    try:
        report = verify_files(paths, keys)
    except OSError as e:
        return usage(f"cannot read {e.filename}: {e.strerror or e}")
    print(json.dumps(report.to_json(), indent=1) if args.json else report.format())
    return 0 if report.ok else 1


# ---------------------------------------------------------------------------------------


def mitmproxy_arguments(args: argparse.Namespace) -> list[str]:
    """`auditproxy run` flags -> mitmdump arguments."""
    options: dict[str, str] = {
        "listen_host": args.listen_host,
        "listen_port": str(args.listen_port),
        "auditproxy_policy": str(Path(args.policy or _default_policy()).resolve()),
        "auditproxy_access_log": args.access_log,
        "auditproxy_metrics_host": args.metrics_host,
        "auditproxy_metrics_port": str(args.metrics_port),
        # The policy's client CIDRs decide who may use the proxy; mitmproxy's own
        # "block_global" would refuse departments whose networks use public addresses.
        "block_global": "false",
        # One line per request on stderr is noise at hundreds of requests a second.
        "flow_detail": "0",
        # Stream bodies over 4 MB instead of holding them in memory (downloads, video).
        # Pages up to this size can carry the notice (auditproxy_notice_max_bytes).
        "stream_large_bodies": "4m",
    }
    if args.state:
        # A Redis URL (several instances sharing the notice state) goes through as it is.
        shared = args.state.strip().lower().startswith(("redis://", "rediss://"))
        options["auditproxy_state"] = args.state if shared else str(Path(args.state).resolve())
    if args.confdir:
        options["confdir"] = str(Path(args.confdir).expanduser().resolve())
    if args.pseudonym_key:
        options["auditproxy_pseudonym_key"] = str(Path(args.pseudonym_key).resolve())
    # The operator's --set win over these defaults. mitmproxy refuses an option given
    # twice, so merge rather than append; a bare `--set NAME` (true) keeps its form.
    settings = {name: f"{name}={value}" for name, value in options.items()}
    for setting in args.setoptions:
        settings[setting.split("=", 1)[0].strip()] = setting
    argv: list[str] = []
    for setting in settings.values():
        argv += ["--set", setting]
    return argv


def cmd_run(args: argparse.Namespace) -> int:
    if args.confdir:
        Path(args.confdir).expanduser().mkdir(parents=True, exist_ok=True, mode=0o700)
    from auditproxy.preflight import run_checks

    # Secrets that others can read: refuse before mitmproxy loads (and trusts) them.
    problems = run_checks(args.confdir, args.pseudonym_key, args.setoptions)
    for problem in problems:
        print(f"auditproxy run: {problem}", file=sys.stderr)
    if problems:
        return 1
    from auditproxy.runner import run_proxy

    return run_proxy(mitmproxy_arguments(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
