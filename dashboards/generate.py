#!/usr/bin/env python3
"""Generate auditproxy's Grafana dashboards from code.

    python dashboards/generate.py           # (re)write the JSON files next to this script
    python dashboards/generate.py --check   # exit 1 if a committed file differs from the code

Plain Python, no dependencies: the dashboards are Grafana's JSON model for Grafana 11.x
(schemaVersion 39; Grafana 11 and 12 migrate it on load). Output is deterministic: sorted
keys, two-space indent, panel ids fixed in the code below (never renumbered, so links to
`viewPanel=N` keep working). Edit this file, not the JSON.

Every query names only metrics the add-on exports (see addons/auditproxy/metrics.py) or
Prometheus's own `up`; tests/test_dashboards.py checks that against the real registry,
and tests/e2e/test_prometheus.py runs every query against a real Prometheus.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GRAFANA_VERSION = "11.6.1"  # the version the JSON model is written for (and compose pins)
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["auditproxy"]

# Label matchers every query carries, so the job/instance variables always apply.
SCOPE = 'job=~"$job", instance=~"$instance"'


def sel(metric: str, *matchers: str) -> str:
    """`metric{job=~"$job", instance=~"$instance", <matchers>}`."""
    return metric + "{" + ", ".join((SCOPE, *matchers)) + "}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({sel(metric, *matchers)}[$__rate_interval])"


def increase_range(metric: str, *matchers: str) -> str:
    """Total over the dashboard's time range (for stat and table panels)."""
    return f"increase({sel(metric, *matchers)}[$__range])"


def ratio_or_zero(num: str, den: str, by: str = "") -> str:
    """`num / den`, and 0 (not "No data") when `num` has no series yet but `den` has.

    `A or B * 0` keeps B's labels, so the result stays per `by` group.
    """
    grouping = f" by ({by})" if by else ""
    return f"(sum{grouping} ({num}) or sum{grouping} ({den}) * 0) / sum{grouping} ({den})"


def quantile(q: float, bucket_rate: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) ({bucket_rate}))"


@dataclass
class Target:
    expr: str
    legend: str = "__auto"
    instant: bool = False  # tables and "current value" stats


@dataclass
class Panel:
    id: int
    kind: str  # timeseries | stat | table
    title: str
    description: str
    unit: str
    targets: list[Target]
    w: int = 12
    h: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    stack: bool = False
    mappings: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    columns: dict[str, str] = field(default_factory=dict)  # table: label -> header
    value_header: str = "Value"  # table: header of the value column
    color_mode: str = "value"  # stat: value | background | none


# --------------------------------------------------------------------------------------
# Monitored access: for the security team.
# --------------------------------------------------------------------------------------

REQ = "auditproxy_requests_total"
NOTICES = "auditproxy_notices_total"
CAT = 'category=~"$category"'
SHOWN = 'event="shown"'
ACKNOWLEDGED = 'event="acknowledged"'
BLOCK = 'action="block"'
REFUSE = 'action="refuse"'
MONITOR = 'action="monitor"'
BYPASS = 'action="bypass"'
DROPPED = 'outcome="dropped"'
NAMED_SITE = 'site!="other"'


def monitored_access_panels() -> list[Panel]:
    return [
        Panel(
            1,
            "stat",
            "Requests",
            "Requests the proxy handled in the selected time range, every action "
            "(monitor, log, bypass, block, refuse), for the selected categories.",
            "short",
            [Target(f"sum({increase_range(REQ, CAT)})", "requests", instant=True)],
            w=4,
            h=4,
        ),
        Panel(
            2,
            "stat",
            "Monitored share",
            "Share of all requests in the selected time range whose policy action is "
            "monitor (social media and other monitored categories). Ignores the category "
            "filter: it is a share of all traffic.",
            "percentunit",
            [
                Target(
                    ratio_or_zero(increase_range(REQ, MONITOR), increase_range(REQ)),
                    "monitored",
                    instant=True,
                )
            ],
            w=4,
            h=4,
            min=0,
            max=1,
            decimals=1,
        ),
        Panel(
            3,
            "stat",
            "Notices shown",
            "Daily notices injected into a page in the selected time range (the first page "
            "a person opens on a monitored site each day).",
            "short",
            [
                Target(
                    f"sum({increase_range(NOTICES, CAT, SHOWN)})",
                    "shown",
                    instant=True,
                )
            ],
            w=4,
            h=4,
        ),
        Panel(
            4,
            "stat",
            "Notices acknowledged",
            "Notices whose acknowledgement link was followed in the selected time range.",
            "short",
            [
                Target(
                    f"sum({increase_range(NOTICES, CAT, ACKNOWLEDGED)})",
                    "acknowledged",
                    instant=True,
                )
            ],
            w=4,
            h=4,
        ),
        Panel(
            5,
            "stat",
            "Blocked requests",
            "Requests refused with the policy's block page (action block) in the selected "
            "time range.",
            "short",
            [Target(f"sum({increase_range(REQ, CAT, BLOCK)})", "blocked", instant=True)],
            w=4,
            h=4,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        Panel(
            6,
            "stat",
            "Refused clients",
            "Requests answered 403 because the client's address is outside the policy's "
            "allowed networks (clients.allow), in the selected time range. Counts requests, "
            "not distinct clients. Anything above zero is worth a look: someone outside "
            "the department is trying to use the proxy.",
            "short",
            [Target(f"sum({increase_range(REQ, REFUSE)})", "refused", instant=True)],
            w=4,
            h=4,
            thresholds=[(None, "green"), (1, "red")],
        ),
        Panel(
            7,
            "timeseries",
            "Requests by category",
            "Request rate per policy category (per second). Unclassified traffic is "
            "category other.",
            "reqps",
            [Target(f"sum by (category) ({rate(REQ, CAT)})", "{{category}}")],
            min=0,
            stack=True,
        ),
        Panel(
            8,
            "timeseries",
            "Share of traffic that is monitored",
            "Requests with action monitor as a share of all requests, over time. Ignores "
            "the category filter.",
            "percentunit",
            [
                Target(
                    ratio_or_zero(rate(REQ, MONITOR), rate(REQ)),
                    "monitored share",
                )
            ],
            min=0,
            max=1,
        ),
        Panel(
            9,
            "timeseries",
            "Requests by site (top 15)",
            "Request rate per named site of the policy (per second), the 15 busiest at "
            "each point in time. Unclassified traffic (site other) is left out; it is in "
            "Requests by category.",
            "reqps",
            [
                Target(
                    f"topk(15, sum by (category, site) ({rate(REQ, CAT, NAMED_SITE)}))",
                    "{{category}}/{{site}}",
                )
            ],
            min=0,
        ),
        Panel(
            10,
            "table",
            "Requests by site and action",
            "Requests per category, site and action in the selected time range, busiest "
            "first. Values are Prometheus estimates (increase), so they can be fractional.",
            "short",
            [
                Target(
                    f"sort_desc(sum by (category, site, action) ({increase_range(REQ, CAT)}))",
                    instant=True,
                )
            ],
            decimals=0,
            columns={"category": "Category", "site": "Site", "action": "Action"},
            value_header="Requests",
        ),
        Panel(
            11,
            "timeseries",
            "Notices shown and acknowledged",
            "Daily notices shown (injected into a page) and acknowledged (link followed), "
            "per minute.",
            "cpm",
            [
                Target(
                    f"60 * sum by (event) ({rate(NOTICES, CAT)})",
                    "{{event}}",
                )
            ],
            min=0,
        ),
        Panel(
            12,
            "table",
            "Notices by site",
            "Notices shown and acknowledged per category and site in the selected time "
            "range. Values are Prometheus estimates (increase).",
            "short",
            [
                Target(
                    f"sort_desc(sum by (category, site, event) ({increase_range(NOTICES, CAT)}))",
                    instant=True,
                )
            ],
            decimals=0,
            columns={"category": "Category", "site": "Site", "event": "Event"},
            value_header="Notices",
        ),
        Panel(
            13,
            "timeseries",
            "Distinct users today by category",
            "Distinct users seen since midnight in the policy's timezone, per category. "
            "The count resets at that midnight, so the value just before the drop is the "
            "day's total. With several proxy instances the counts are added: a person who "
            "went through two instances counts twice.",
            "short",
            [
                Target(
                    f"sum by (category) ({sel('auditproxy_daily_users', CAT)})",
                    "{{category}}",
                )
            ],
            min=0,
            decimals=0,
        ),
        Panel(
            14,
            "stat",
            "Distinct users today",
            "Distinct users seen so far today (policy's timezone), per category. Added "
            "across proxy instances.",
            "short",
            [
                Target(
                    f"sum by (category) ({sel('auditproxy_daily_users', CAT)})",
                    "{{category}}",
                    instant=True,
                )
            ],
            decimals=0,
        ),
        Panel(
            15,
            "timeseries",
            "Blocked requests and refused clients",
            "Requests refused with the block page, per site, and requests refused because "
            "the client is outside the allowed networks, per minute.",
            "cpm",
            [
                Target(
                    f"60 * sum by (category, site) ({rate(REQ, CAT, BLOCK)})",
                    "blocked {{category}}/{{site}}",
                ),
                Target(
                    f"60 * sum({rate(REQ, REFUSE)})",
                    "refused (client not allowed)",
                ),
            ],
            min=0,
        ),
        Panel(
            16,
            "timeseries",
            "Bypass tunnels by category",
            "TLS tunnels opened without decryption (action bypass: banking, health and the "
            "like), per minute. Only the host and port of these are logged.",
            "cpm",
            [
                Target(
                    f"60 * sum by (category) ({rate('auditproxy_tunnels_total', CAT, BYPASS)})",
                    "{{category}}",
                )
            ],
            min=0,
        ),
        Panel(
            17,
            "timeseries",
            "Response bytes by category",
            "Response body bytes sent to clients per policy category (bytes per second), as "
            "counted by auditproxy_response_bytes_total.",
            "Bps",
            [
                Target(
                    f"sum by (category) ({rate('auditproxy_response_bytes_total', CAT)})",
                    "{{category}}",
                )
            ],
            min=0,
            w=24,
        ),
    ]


# --------------------------------------------------------------------------------------
# Proxy health: for IT.
# --------------------------------------------------------------------------------------

UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "DOWN"},
            "1": {"color": "green", "index": 1, "text": "UP"},
        },
    }
]
RELOAD_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "FAILED"},
            "1": {"color": "green", "index": 1, "text": "OK"},
        },
    }
]
REQ_BUCKETS = "auditproxy_request_duration_seconds_bucket"
HOOK_BUCKETS = "auditproxy_hook_duration_seconds_bucket"
ERRORS = 'status_class=~"5xx|none"'
ON_MEMORY = 'backend="memory"'


# Notices due = shown + skipped; each side is 0 (not missing) when only the other exists.
_SKIPPED = f"sum({rate('auditproxy_notice_skipped_total')})"
_SHOWN = f"sum({rate(NOTICES, SHOWN)})"
SKIPPED_OR_ZERO = f"({_SKIPPED} or {_SHOWN} * 0)"
SHOWN_OR_ZERO = f"({_SHOWN} or {_SKIPPED} * 0)"


def proxy_health_panels() -> list[Panel]:
    return [
        Panel(
            1,
            "stat",
            "Up",
            "Whether Prometheus's last scrape of each proxy's metrics endpoint succeeded "
            "(Prometheus's own up series for the job).",
            "none",
            [Target('up{job=~"$job", instance=~"$instance"}', "{{instance}}", instant=True)],
            w=4,
            h=4,
            mappings=UP_MAPPINGS,
            thresholds=[(None, "red"), (1, "green")],
            color_mode="background",
        ),
        Panel(
            2,
            "stat",
            "Request rate",
            "Requests per second, all proxies in the selection together.",
            "reqps",
            [Target(f"sum({rate(REQ)})", "requests")],
            w=4,
            h=4,
        ),
        Panel(
            3,
            "stat",
            "Error ratio",
            "Share of requests that ended with a 5xx status or with no response at all "
            "(upstream unreachable, connection reset), over the last rate interval. Origin "
            "servers' own 5xx count too.",
            "percentunit",
            [Target(ratio_or_zero(rate(REQ, ERRORS), rate(REQ)), "errors")],
            w=4,
            h=4,
            decimals=2,
            thresholds=[(None, "green"), (0.02, "orange"), (0.05, "red")],
        ),
        Panel(
            4,
            "stat",
            "Request latency p95",
            "95th percentile of the time from the first byte of a request to the end of "
            "its response, all proxies and categories.",
            "s",
            [Target(quantile(0.95, rate(REQ_BUCKETS)), "p95")],
            w=4,
            h=4,
        ),
        Panel(
            5,
            "stat",
            "Last policy reload",
            "Whether the last attempt to load the policy file succeeded, on every proxy "
            "(the worst one is shown). After a failed reload the last good policy stays in "
            "force; fix the file (auditproxy check FILE shows what is wrong).",
            "none",
            [
                Target(
                    f"min({sel('auditproxy_policy_last_reload_successful')})",
                    "last reload",
                    instant=True,
                )
            ],
            w=4,
            h=4,
            mappings=RELOAD_MAPPINGS,
            thresholds=[(None, "red"), (1, "green")],
            color_mode="background",
        ),
        Panel(
            6,
            "stat",
            "Log records dropped",
            "Access-log records that could not be written in the selected time range. "
            "Anything above zero is an audit gap: check the disk and the log destination.",
            "short",
            [
                Target(
                    f"sum({increase_range('auditproxy_log_records_total', DROPPED)})",
                    "dropped",
                    instant=True,
                )
            ],
            w=4,
            h=4,
            decimals=0,
            thresholds=[(None, "green"), (1, "red")],
            color_mode="background",
        ),
        Panel(
            7,
            "timeseries",
            "Requests by status class",
            "Request rate by response status class (per second); none means no response "
            "was received (upstream unreachable, client gone).",
            "reqps",
            [Target(f"sum by (status_class) ({rate(REQ)})", "{{status_class}}")],
            min=0,
            stack=True,
        ),
        Panel(
            8,
            "timeseries",
            "Error ratio by instance",
            "Share of requests with a 5xx status or no response, per proxy instance. 0 "
            "when there were requests and none failed; no line when there was no traffic.",
            "percentunit",
            [
                Target(
                    ratio_or_zero(rate(REQ, ERRORS), rate(REQ), by="instance"),
                    "{{instance}}",
                )
            ],
            min=0,
            max=1,
        ),
        Panel(
            9,
            "timeseries",
            "Request latency",
            "p50, p95 and p99 of the time from the first byte of a request to the end of "
            "its response, all categories. Mostly the origin servers' time; the add-on's "
            "own share is in Add-on hook latency.",
            "s",
            [
                Target(quantile(0.5, rate(REQ_BUCKETS)), "p50"),
                Target(quantile(0.95, rate(REQ_BUCKETS)), "p95"),
                Target(quantile(0.99, rate(REQ_BUCKETS)), "p99"),
            ],
            min=0,
        ),
        Panel(
            10,
            "timeseries",
            "Request latency p95 by category",
            "95th percentile request latency per policy category.",
            "s",
            [Target(quantile(0.95, rate(REQ_BUCKETS), by="le, category"), "{{category}}")],
            min=0,
        ),
        Panel(
            11,
            "timeseries",
            "Add-on hook latency",
            "p50, p95 and p99 of the time the add-on itself spends in a mitmproxy hook, all "
            "hooks together: its overhead per request. Everything runs on one event loop, "
            "so a slow hook delays every connection.",
            "s",
            [
                Target(quantile(0.5, rate(HOOK_BUCKETS)), "p50"),
                Target(quantile(0.95, rate(HOOK_BUCKETS)), "p95"),
                Target(quantile(0.99, rate(HOOK_BUCKETS)), "p99"),
            ],
            min=0,
        ),
        Panel(
            12,
            "timeseries",
            "Add-on hook latency p99 by hook",
            "99th percentile of the add-on's time per mitmproxy hook (requestheaders, "
            "http_connect, tls_clienthello, responseheaders, response, error).",
            "s",
            [Target(quantile(0.99, rate(HOOK_BUCKETS), by="le, hook"), "{{hook}}")],
            min=0,
        ),
        Panel(
            13,
            "timeseries",
            "Add-on errors by stage",
            "Faults inside the add-on per pipeline stage, per minute. Traffic went on "
            "unchanged (fail open), but the request may be missing from the log or metrics; "
            "mitmproxy's own log (stderr, or the journal) has the details.",
            "cpm",
            [Target(f"60 * sum by (stage) ({rate('auditproxy_errors_total')})", "{{stage}}")],
            min=0,
        ),
        Panel(
            14,
            "timeseries",
            "Access-log records written and dropped",
            "Access-log records per second by outcome: written, or dropped (could not be written).",
            "cps",
            [
                Target(
                    f"sum by (outcome) ({rate('auditproxy_log_records_total')})",
                    "{{outcome}}",
                )
            ],
            min=0,
        ),
        Panel(
            15,
            "timeseries",
            "Policy reloads",
            "Policy file reloads per minute by result. A failure keeps the last good policy "
            "in force.",
            "cpm",
            [
                Target(
                    f"60 * sum by (result) ({rate('auditproxy_policy_reloads_total')})",
                    "{{result}}",
                )
            ],
            min=0,
        ),
        Panel(
            16,
            "table",
            "Policy in force",
            "The policy each proxy enforces now: its name and the SHA-256 of its file "
            "(compare with sha256sum of the file you deployed; the access log's rule.version "
            "carries the same hash).",
            "none",
            [
                Target(
                    f"max by (instance, name, sha256) ({sel('auditproxy_policy_info')})",
                    instant=True,
                )
            ],
            columns={"instance": "Instance", "name": "Policy", "sha256": "SHA-256"},
            value_header="In force",
        ),
        Panel(
            17,
            "timeseries",
            "Notice skips by reason",
            "Pages that were due the daily notice but could not carry it safely (for "
            "example a Content-Security-Policy that forbids it), per minute by reason. The "
            "person gets the notice on a later page.",
            "cpm",
            [
                Target(
                    f"60 * sum by (reason) ({rate('auditproxy_notice_skipped_total')})",
                    "{{reason}}",
                )
            ],
            min=0,
        ),
        Panel(
            18,
            "timeseries",
            "Notice skip ratio",
            "Skipped notices as a share of notices due (shown plus skipped). A high share "
            "means many monitored pages cannot carry the banner.",
            "percentunit",
            [
                Target(
                    f"{SKIPPED_OR_ZERO} / ({SKIPPED_OR_ZERO} + {SHOWN_OR_ZERO})",
                    "skipped share",
                )
            ],
            min=0,
            max=1,
        ),
        Panel(
            19,
            "timeseries",
            "TLS tunnels by action",
            "TLS tunnels (CONNECT) per second by the policy's action; bypass tunnels are "
            "not decrypted.",
            "cps",
            [
                Target(
                    f"sum by (action) ({rate('auditproxy_tunnels_total')})",
                    "{{action}}",
                )
            ],
            min=0,
        ),
        Panel(
            20,
            "table",
            "Versions",
            "auditproxy and mitmproxy versions per proxy instance.",
            "none",
            [
                Target(
                    "max by (instance, version, mitmproxy_version) "
                    f"({sel('auditproxy_build_info')})",
                    instant=True,
                )
            ],
            columns={
                "instance": "Instance",
                "version": "auditproxy",
                "mitmproxy_version": "mitmproxy",
            },
            value_header="Info",
        ),
        # Several instances behind a load balancer (docs/scaling.md).
        Panel(
            21,
            "timeseries",
            "Requests by instance",
            "Request rate per proxy instance (per second): how evenly the load balancer "
            "spreads the work. One instance uses at most one core; when the busiest nears "
            "its measured capacity (docs/scaling.md), add an instance.",
            "reqps",
            [Target(f"sum by (instance) ({rate(REQ)})", "{{instance}}")],
            min=0,
        ),
        Panel(
            22,
            "timeseries",
            "Instances on the notice state fallback",
            "Proxy instances answering the daily notice state from their own memory because "
            "the configured store (Redis or SQLite) fails. While above zero those instances "
            "decide alone, so a person may see the notice once per instance that day; each "
            "goes back to the store by itself when it works again (errors by stage: state).",
            "short",
            [
                Target(
                    f"sum({sel('auditproxy_state_backend', ON_MEMORY)})",
                    "on memory",
                )
            ],
            min=0,
            decimals=0,
        ),
        Panel(
            23,
            "table",
            "Notice state by instance",
            "The daily notice state each instance uses now: redis (shared by all instances), "
            "sqlite (this instance's own file), or memory (the fallback while the configured "
            "store fails).",
            "none",
            [
                Target(
                    f"max by (instance, backend) ({sel('auditproxy_state_backend')}) == 1",
                    instant=True,
                )
            ],
            columns={"instance": "Instance", "backend": "Notice state"},
            value_header="In use",
        ),
    ]


# --------------------------------------------------------------------------------------
# JSON model.
# --------------------------------------------------------------------------------------


def datasource_variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name: str, label: str, query: str, description: str) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "current": {},
        "hide": 0,
        "includeAll": True,
        "allValue": ".+",
        "multi": True,
        "options": [],
        "refresh": 2,  # on time range change: instances come and go
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def scope_variables() -> list[dict[str, Any]]:
    return [
        datasource_variable(),
        query_variable(
            "job",
            "Job",
            "label_values(auditproxy_build_info, job)",
            "Prometheus scrape job(s) of the proxies.",
        ),
        query_variable(
            "instance",
            "Instance",
            'label_values(auditproxy_build_info{job=~"$job"}, instance)',
            "Proxy instance(s): the metrics endpoint address.",
        ),
    ]


def field_config(p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": p.unit,
        "mappings": p.mappings,
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in p.thresholds],
        },
        "color": {"mode": "palette-classic" if p.kind == "timeseries" else "thresholds"},
    }
    for key in ("min", "max", "decimals"):
        if getattr(p, key) is not None:
            defaults[key] = getattr(p, key)
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if p.stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if p.stack else "none"},
        }
    if p.kind == "table":
        defaults["custom"] = {"align": "auto", "filterable": True}
    return {"defaults": defaults, "overrides": []}


def options(p: Panel) -> dict[str, Any]:
    if p.kind == "timeseries":
        return {
            "legend": {
                "calcs": ["mean", "max", "lastNotNull"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if p.kind == "stat":
        return {
            "colorMode": p.color_mode,
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    return {"cellHeight": "sm", "showHeader": True, "footer": {"show": False}}


def target_json(t: Target, ref: str, p: Panel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": t.expr,
        "legendFormat": t.legend,
        "refId": ref,
        "range": not t.instant,
        "instant": t.instant,
    }
    if p.kind == "table":
        out["format"] = "table"
    return out


def panel_json(p: Panel, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "fieldConfig": field_config(p),
        "options": options(p),
        "targets": [target_json(t, chr(ord("A") + i), p) for i, t in enumerate(p.targets)],
    }
    if p.kind == "table":
        rename = dict(p.columns, Value=p.value_header)
        order = {name: i for i, name in enumerate([*p.columns, "Value"])}
        out["transformations"] = [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "job": True},
                    "indexByName": order,
                    "renameByName": rename,
                },
            }
        ]
    return out


def layout(panels: list[Panel]) -> list[dict[str, Any]]:
    """Flow panels left to right in Grafana's 24-column grid, wrapping like text."""
    ids = [p.id for p in panels]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate panel ids: {ids}")
    out, x, y, row_h = [], 0, 0, 0
    for p in panels:
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(panel_json(p, x, y))
        x += p.w
        row_h = max(row_h, p.h)
    return out


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    extra_variables: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,  # shared crosshair
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "id": None,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "title": "auditproxy",
                "tags": TAGS,
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": scope_variables() + (extra_variables or [])},
        "panels": layout(panels),
    }


def build() -> dict[str, dict[str, Any]]:
    category = query_variable(
        "category",
        "Category",
        'label_values(auditproxy_requests_total{job=~"$job", instance=~"$instance"}, category)',
        "Policy categories (other: unclassified traffic).",
    )
    return {
        "monitored-access.json": dashboard(
            "auditproxy-monitored-access",
            "auditproxy / Monitored access",
            "For the security team: what the department's staff reach through the proxy, "
            "by policy category and site, the daily notices, blocks, refused clients and "
            "bypassed tunnels. Metadata only: no users, addresses or URLs are in metrics.",
            monitored_access_panels(),
            [category],
        ),
        "proxy-health.json": dashboard(
            "auditproxy-proxy-health",
            "auditproxy / Proxy health",
            "For IT: is the proxy up, how fast and how healthy, the add-on's own overhead, "
            "its errors, the access log, the policy in force and the daily notice's skips.",
            proxy_health_panels(),
        ),
    }


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed JSON differs from the code"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args(argv)
    stale = []
    for name, model in build().items():
        path = args.out / name
        text = render(model)
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                stale.append(name)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"{name} (committed)",
                        f"{name} (generated)",
                        n=2,
                    )
                )
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(
            f"\nout of date: {', '.join(stale)}; run: python dashboards/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
