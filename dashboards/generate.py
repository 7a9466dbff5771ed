#!/usr/bin/env python3
"""Generate auditproxy's Grafana dashboards from code, with Grafana's typed Python SDK.

    .venv/bin/python dashboards/generate.py          # (re)write the JSON files next to it
    .venv/bin/python dashboards/generate.py --check  # exit 1 if a committed file is stale

(.venv has the SDK: scripts/test makes it from uv.lock.)

The panels, variables and links are built with `grafana-foundation-sdk` (the dependency
group `dashboards` in pyproject.toml), whose release is generated from Grafana 11.6's own
schema: the JSON is Grafana's dashboard model for Grafana 11.6 (schemaVersion 41; Grafana
12 migrates it on load). The product itself never imports the SDK. Output is deterministic:
sorted keys, two-space indent, panel ids fixed in the code below (never renumbered, so links
to `viewPanel=N` keep working). Edit this file, not the JSON.

Every query names only metrics the add-on exports (see addons/auditproxy/metrics.py) or
Prometheus's own `up`; tests/test_dashboards.py checks that against the real registry,
and tests/e2e/test_prometheus.py runs every query against a real Prometheus, with every
kind of traffic and with ordinary traffic only: every query returns a value in both (0 when
nothing happened, see `or_zero`), so no panel says "No data".
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueJustifyMode,
    BigValueTextMode,
    FieldTextAlignment,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TableCellHeight,
    TooltipDisplayMode,
    VisibilityMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

HERE = Path(__file__).resolve().parent
# The Grafana the JSON model is written for: docker-compose.yml pins this image, and
# pyproject.toml pins the SDK release generated for its minor (11.6).
GRAFANA_VERSION = "11.6.1"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["auditproxy"]

# Label matchers every query carries, so the job/instance variables always apply.
SCOPE = 'job=~"$job", instance=~"$instance"'


# --------------------------------------------------------------------------------------
# PromQL.
# --------------------------------------------------------------------------------------


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


def or_zero(expr: str) -> str:
    """`expr`, or 0 while it has no series at all: a count of events that have not happened
    since the proxy started (no block, refusal, bypass tunnel...: prometheus_client makes a
    labelled series only when it is first counted) is 0, not "No data".

    The 0 is the selected proxies' build_info times 0, so a selection with no proxy behind
    it still says No data (`or vector(0)` would show 0 for a proxy that is down or gone).
    `on()` matches on no label at all: the 0 stands in only when `expr` is empty, whatever
    labels its series carry. The 0 has no labels, so a legend such as `{{reason}}` shows
    the label's name (Grafana's rendering of a missing label).
    """
    return f"{expr} or on() 0 * sum({sel('auditproxy_build_info')})"


def quantile(q: float, bucket_rate: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) ({bucket_rate}))"


# --------------------------------------------------------------------------------------
# Panels, with the SDK's builders: one factory per panel type carries the house style.
# --------------------------------------------------------------------------------------

type Panel = stat.Panel | timeseries.Panel | table.Panel


def series(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    """A range query: what a time series panel (or a stat over the last rate) plots."""
    return _query(expr, legend).range()


def instant(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    """An instant query: tables, and stats of a total or a current value."""
    return _query(expr, legend).instant()


def _query(expr: str, legend: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .datasource(DS)
        .editor_mode(QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
    )


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds from (lower bound, colour) pairs; the first bound is None."""
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def value_texts(*texts: tuple[str, str, str]) -> list[model.ValueMapping]:
    """A value mapping from (value, text, colour) triples."""
    options = {
        value: model.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, text, color) in enumerate(texts)
    }
    return [model.ValueMap(options=options)]


def _describe[P: (stat.Panel, timeseries.Panel, table.Panel)](
    panel: P,
    id_: int,
    title: str,
    description: str,
    unit: str,
    queries: tuple[prometheus.Dataquery, ...],
) -> P:
    """What every panel has: a fixed id, title, description, unit, the datasource variable,
    queries A, B, C..., no value mappings and a green base threshold unless told."""
    for i, query in enumerate(queries):
        query.ref_id(chr(ord("A") + i))
    return (
        panel.id(id_)
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DS)
        .targets(list(queries))
        .mappings([])
        .thresholds(thresholds((None, "green")))
        .span(12)
        .height(8)
    )


def stat_panel(
    id_: int,
    title: str,
    description: str,
    unit: str,
    *queries: prometheus.Dataquery,
    color_mode: BigValueColorMode = BigValueColorMode.VALUE,
) -> stat.Panel:
    """A single value (the last one), 4 x 4."""
    return (
        _describe(stat.Panel(), id_, title, description, unit, queries)
        .span(4)
        .height(4)
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .color_mode(color_mode)
        .graph_mode(BigValueGraphMode.NONE)
        .justify_mode(BigValueJustifyMode.AUTO)
        .orientation(VizOrientation.AUTO)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .text_mode(BigValueTextMode.AUTO)
    )


def timeseries_panel(
    id_: int,
    title: str,
    description: str,
    unit: str,
    *queries: prometheus.Dataquery,
    stacked: bool = False,
) -> timeseries.Panel:
    """Lines (stacked areas if `stacked`), with a legend table of mean, max and last."""
    return (
        _describe(timeseries.Panel(), id_, title, description, unit, queries)
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(20 if stacked else 0)
        .show_points(VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            common.StackingConfig()
            .group("A")
            .mode(StackingMode.NORMAL if stacked else StackingMode.NONE)
        )
        .legend(
            common.VizLegendOptions()
            .calcs(["mean", "max", "lastNotNull"])
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
    )


def table_panel(
    id_: int,
    title: str,
    description: str,
    unit: str,
    query: prometheus.Dataquery,
    *,
    columns: dict[str, str],
    value_header: str,
) -> table.Panel:
    """One row per series of an instant query: `columns` (label -> header) in that order,
    then the value under `value_header`; the time and job columns are hidden."""
    query.format(PromQueryFormat.TABLE)
    order = [*columns, "Value"]
    organize = model.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": {"Time": True, "job": True},
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": dict(columns, Value=value_header),
        },
    )
    return (
        _describe(table.Panel(), id_, title, description, unit, (query,))
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .align(FieldTextAlignment.AUTO)
        .filterable(True)
        .cell_height(TableCellHeight.SM)
        .show_header(True)
        .footer(common.TableFooterOptions().show(False))
        .transformations([organize])
    )


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
REFUSALS = "auditproxy_refusals_total"
OUTSIDER = 'reason="client"'
MONITOR = 'action="monitor"'
BYPASS = 'action="bypass"'
DROPPED = 'outcome="dropped"'
NAMED_SITE = 'site!="other"'


def monitored_access_panels() -> list[Panel]:
    return [
        stat_panel(
            1,
            "Requests",
            "Requests the proxy handled in the selected time range, every action "
            "(monitor, log, bypass, block, refuse), for the selected categories.",
            "short",
            instant(f"sum({increase_range(REQ, CAT)})", "requests"),
        ),
        (
            stat_panel(
                2,
                "Monitored share",
                "Share of all requests in the selected time range whose policy action is "
                "monitor (social media and other monitored categories). Ignores the category "
                "filter: it is a share of all traffic.",
                "percentunit",
                instant(
                    ratio_or_zero(increase_range(REQ, MONITOR), increase_range(REQ)), "monitored"
                ),
            )
            .min(0)
            .max(1)
            .decimals(1)
        ),
        stat_panel(
            3,
            "Notices shown",
            "Daily notices injected into a page in the selected time range (the first page "
            "a person opens on a monitored site each day).",
            "short",
            instant(f"sum({increase_range(NOTICES, CAT, SHOWN)})", "shown"),
        ),
        stat_panel(
            4,
            "Notices acknowledged",
            "Notices whose acknowledgement link was followed in the selected time range.",
            "short",
            instant(or_zero(f"sum({increase_range(NOTICES, CAT, ACKNOWLEDGED)})"), "acknowledged"),
        ),
        (
            stat_panel(
                5,
                "Blocked requests",
                "Requests refused with the policy's block page (action block) in the selected "
                "time range.",
                "short",
                instant(or_zero(f"sum({increase_range(REQ, CAT, BLOCK)})"), "blocked"),
            ).thresholds(thresholds((None, "green"), (1, "orange")))
        ),
        (
            stat_panel(
                6,
                "Refused clients",
                "Connections closed as they opened (clients.refuse: connect) and requests "
                "answered 403 (clients.refuse: page) because the client's address is outside "
                "the policy's allowed networks (clients.allow), in the selected time range. "
                "Counts attempts, not distinct clients. Anything above zero is worth a look: "
                "someone outside the department is trying to use the proxy.",
                "short",
                instant(
                    # The connections' series always exists (counted from 0); the requests'
                    # only once one was refused with the page.
                    f"sum({increase_range(REFUSALS, OUTSIDER)}) + (sum("
                    f"{increase_range(REQ, REFUSE)}) or sum({increase_range(REFUSALS, OUTSIDER)})"
                    " * 0)",
                    "refused",
                ),
            ).thresholds(thresholds((None, "green"), (1, "red")))
        ),
        (
            timeseries_panel(
                7,
                "Requests by category",
                "Request rate per policy category (per second). Unclassified traffic is "
                "category other.",
                "reqps",
                series(f"sum by (category) ({rate(REQ, CAT)})", "{{category}}"),
                stacked=True,
            ).min(0)
        ),
        (
            timeseries_panel(
                8,
                "Share of traffic that is monitored",
                "Requests with action monitor as a share of all requests, over time. Ignores "
                "the category filter.",
                "percentunit",
                series(ratio_or_zero(rate(REQ, MONITOR), rate(REQ)), "monitored share"),
            )
            .min(0)
            .max(1)
        ),
        (
            timeseries_panel(
                9,
                "Requests by site (top 15)",
                "Request rate per named site of the policy (per second), the 15 busiest at "
                "each point in time. Unclassified traffic (site other) is left out; it is in "
                "Requests by category.",
                "reqps",
                series(
                    f"topk(15, sum by (category, site) ({rate(REQ, CAT, NAMED_SITE)}))",
                    "{{category}}/{{site}}",
                ),
            ).min(0)
        ),
        (
            table_panel(
                10,
                "Requests by site and action",
                "Requests per category, site and action in the selected time range, busiest "
                "first. Values are Prometheus estimates (increase), so they can be fractional.",
                "short",
                instant(f"sort_desc(sum by (category, site, action) ({increase_range(REQ, CAT)}))"),
                columns={"category": "Category", "site": "Site", "action": "Action"},
                value_header="Requests",
            ).decimals(0)
        ),
        (
            timeseries_panel(
                11,
                "Notices shown and acknowledged",
                "Daily notices shown (injected into a page) and acknowledged (link followed), "
                "per minute.",
                "cpm",
                series(f"60 * sum by (event) ({rate(NOTICES, CAT)})", "{{event}}"),
            ).min(0)
        ),
        (
            table_panel(
                12,
                "Notices by site",
                "Notices shown and acknowledged per category and site in the selected time "
                "range. Values are Prometheus estimates (increase).",
                "short",
                instant(
                    f"sort_desc(sum by (category, site, event) ({increase_range(NOTICES, CAT)}))"
                ),
                columns={"category": "Category", "site": "Site", "event": "Event"},
                value_header="Notices",
            ).decimals(0)
        ),
        (
            timeseries_panel(
                13,
                "Distinct users today by category",
                "Distinct users seen since midnight in the policy's timezone, per category. "
                "The count resets at that midnight, so the value just before the drop is the "
                "day's total. With several proxy instances the counts are added: a person who "
                "went through two instances counts twice.",
                "short",
                series(f"sum by (category) ({sel('auditproxy_daily_users', CAT)})", "{{category}}"),
            )
            .min(0)
            .decimals(0)
        ),
        (
            stat_panel(
                14,
                "Distinct users today",
                "Distinct users seen so far today (policy's timezone), per category. Added "
                "across proxy instances.",
                "short",
                instant(
                    f"sum by (category) ({sel('auditproxy_daily_users', CAT)})", "{{category}}"
                ),
            )
            .span(12)
            .height(8)
            .decimals(0)
        ),
        (
            timeseries_panel(
                15,
                "Blocked requests and refused clients",
                "Requests refused with the block page, per site, requests refused because the "
                "client is outside the allowed networks (clients.refuse: page), and connections "
                "the proxy refused or closed, by reason (client: outside the networks; "
                "limit-*: caps; head-*, body-timeout: hostile or broken clients), per minute.",
                "cpm",
                series(
                    or_zero(f"60 * sum by (category, site) ({rate(REQ, CAT, BLOCK)})"),
                    "blocked {{category}}/{{site}}",
                ),
                series(or_zero(f"60 * sum({rate(REQ, REFUSE)})"), "refused (client not allowed)"),
                series(
                    or_zero(f"60 * sum by (reason) ({rate(REFUSALS)})"),
                    "connections refused: {{reason}}",
                ),
            ).min(0)
        ),
        (
            timeseries_panel(
                16,
                "Bypass tunnels by category",
                "TLS tunnels opened without decryption (action bypass: banking, health and the "
                "like), per minute. Only the host and port of these are logged.",
                "cpm",
                series(
                    or_zero(
                        f"60 * sum by (category) ({rate('auditproxy_tunnels_total', CAT, BYPASS)})"
                    ),
                    "{{category}}",
                ),
            ).min(0)
        ),
        (
            timeseries_panel(
                17,
                "Response bytes by category",
                "Response body bytes sent to clients per policy category (bytes per second), as "
                "counted by auditproxy_response_bytes_total.",
                "Bps",
                series(
                    f"sum by (category) ({rate('auditproxy_response_bytes_total', CAT)})",
                    "{{category}}",
                ),
            )
            .span(24)
            .min(0)
        ),
    ]


# --------------------------------------------------------------------------------------
# Proxy health: for IT.
# --------------------------------------------------------------------------------------

UP_MAPPINGS = value_texts(("0", "DOWN", "red"), ("1", "UP", "green"))
RELOAD_MAPPINGS = value_texts(("0", "FAILED", "red"), ("1", "OK", "green"))
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
        (
            stat_panel(
                1,
                "Up",
                "Whether Prometheus's last scrape of each proxy's metrics endpoint succeeded "
                "(Prometheus's own up series for the job).",
                "none",
                instant('up{job=~"$job", instance=~"$instance"}', "{{instance}}"),
                color_mode="background",
            )
            .thresholds(thresholds((None, "red"), (1, "green")))
            .mappings(UP_MAPPINGS)
        ),
        stat_panel(
            2,
            "Request rate",
            "Requests per second, all proxies in the selection together.",
            "reqps",
            series(f"sum({rate(REQ)})", "requests"),
        ),
        (
            stat_panel(
                3,
                "Error ratio",
                "Share of requests that ended with a 5xx status or with no response at all "
                "(upstream unreachable, connection reset), over the last rate interval. Origin "
                "servers' own 5xx count too.",
                "percentunit",
                series(ratio_or_zero(rate(REQ, ERRORS), rate(REQ)), "errors"),
            )
            .decimals(2)
            .thresholds(thresholds((None, "green"), (0.02, "orange"), (0.05, "red")))
        ),
        stat_panel(
            4,
            "Request latency p95",
            "95th percentile of the time from the first byte of a request to the end of "
            "its response, all proxies and categories.",
            "s",
            series(quantile(0.95, rate(REQ_BUCKETS)), "p95"),
        ),
        (
            stat_panel(
                5,
                "Last policy reload",
                "Whether the last attempt to load the policy file succeeded, on every proxy "
                "(the worst one is shown). After a failed reload the last good policy stays in "
                "force; fix the file (auditproxy check FILE shows what is wrong).",
                "none",
                instant(f"min({sel('auditproxy_policy_last_reload_successful')})", "last reload"),
                color_mode="background",
            )
            .thresholds(thresholds((None, "red"), (1, "green")))
            .mappings(RELOAD_MAPPINGS)
        ),
        (
            stat_panel(
                6,
                "Log records dropped",
                "Access-log records that could not be written in the selected time range. "
                "Anything above zero is an audit gap: check the disk and the log destination.",
                "short",
                instant(
                    f"sum({increase_range('auditproxy_log_records_total', DROPPED)})", "dropped"
                ),
                color_mode="background",
            )
            .decimals(0)
            .thresholds(thresholds((None, "green"), (1, "red")))
        ),
        (
            timeseries_panel(
                7,
                "Requests by status class",
                "Request rate by response status class (per second); none means no response "
                "was received (upstream unreachable, client gone).",
                "reqps",
                series(f"sum by (status_class) ({rate(REQ)})", "{{status_class}}"),
                stacked=True,
            ).min(0)
        ),
        (
            timeseries_panel(
                8,
                "Error ratio by instance",
                "Share of requests with a 5xx status or no response, per proxy instance. 0 "
                "when there were requests and none failed; no line when there was no traffic.",
                "percentunit",
                series(ratio_or_zero(rate(REQ, ERRORS), rate(REQ), by="instance"), "{{instance}}"),
            )
            .min(0)
            .max(1)
        ),
        (
            timeseries_panel(
                9,
                "Request latency",
                "p50, p95 and p99 of the time from the first byte of a request to the end of "
                "its response, all categories. Mostly the origin servers' time; the add-on's "
                "own share is in Add-on hook latency.",
                "s",
                series(quantile(0.5, rate(REQ_BUCKETS)), "p50"),
                series(quantile(0.95, rate(REQ_BUCKETS)), "p95"),
                series(quantile(0.99, rate(REQ_BUCKETS)), "p99"),
            ).min(0)
        ),
        (
            timeseries_panel(
                10,
                "Request latency p95 by category",
                "95th percentile request latency per policy category.",
                "s",
                series(quantile(0.95, rate(REQ_BUCKETS), by="le, category"), "{{category}}"),
            ).min(0)
        ),
        (
            timeseries_panel(
                11,
                "Add-on hook latency",
                "p50, p95 and p99 of the time the add-on itself spends in a mitmproxy hook, all "
                "hooks together: its overhead per request. Everything runs on one event loop, "
                "so a slow hook delays every connection.",
                "s",
                series(quantile(0.5, rate(HOOK_BUCKETS)), "p50"),
                series(quantile(0.95, rate(HOOK_BUCKETS)), "p95"),
                series(quantile(0.99, rate(HOOK_BUCKETS)), "p99"),
            ).min(0)
        ),
        (
            timeseries_panel(
                12,
                "Add-on hook latency p99 by hook",
                "99th percentile of the add-on's time per mitmproxy hook (requestheaders, "
                "http_connect, tls_clienthello, responseheaders, response, error).",
                "s",
                series(quantile(0.99, rate(HOOK_BUCKETS), by="le, hook"), "{{hook}}"),
            ).min(0)
        ),
        (
            timeseries_panel(
                13,
                "Add-on errors by stage",
                "Faults inside the add-on per pipeline stage, per minute. Traffic went on "
                "unchanged (fail open), but the request may be missing from the log or metrics; "
                "mitmproxy's own log (stderr, or the journal) has the details.",
                "cpm",
                series(f"60 * sum by (stage) ({rate('auditproxy_errors_total')})", "{{stage}}"),
            ).min(0)
        ),
        (
            timeseries_panel(
                14,
                "Access-log records written and dropped",
                "Access-log records per second by outcome: written, or dropped (could not be "
                "written).",
                "cps",
                series(f"sum by (outcome) ({rate('auditproxy_log_records_total')})", "{{outcome}}"),
            ).min(0)
        ),
        (
            timeseries_panel(
                15,
                "Policy reloads",
                "Policy file reloads per minute by result. A failure keeps the last good policy "
                "in force.",
                "cpm",
                series(
                    f"60 * sum by (result) ({rate('auditproxy_policy_reloads_total')})",
                    "{{result}}",
                ),
            ).min(0)
        ),
        table_panel(
            16,
            "Policy in force",
            "The policy each proxy enforces now: its name and the SHA-256 of its file "
            "(compare with sha256sum of the file you deployed; the access log's rule.version "
            "carries the same hash).",
            "none",
            instant(f"max by (instance, name, sha256) ({sel('auditproxy_policy_info')})"),
            columns={"instance": "Instance", "name": "Policy", "sha256": "SHA-256"},
            value_header="In force",
        ),
        (
            timeseries_panel(
                17,
                "Notice skips by reason",
                "Pages that were due the daily notice but could not carry it safely (for "
                "example a Content-Security-Policy that forbids it), per minute by reason. The "
                "person gets the notice on a later page.",
                "cpm",
                series(
                    or_zero(f"60 * sum by (reason) ({rate('auditproxy_notice_skipped_total')})"),
                    "{{reason}}",
                ),
            ).min(0)
        ),
        (
            timeseries_panel(
                18,
                "Notice skip ratio",
                "Skipped notices as a share of notices due (shown plus skipped). A high share "
                "means many monitored pages cannot carry the banner.",
                "percentunit",
                series(
                    f"{SKIPPED_OR_ZERO} / ({SKIPPED_OR_ZERO} + {SHOWN_OR_ZERO})", "skipped share"
                ),
            )
            .min(0)
            .max(1)
        ),
        (
            timeseries_panel(
                19,
                "TLS tunnels by action",
                "TLS tunnels (CONNECT) per second by the policy's action; bypass tunnels are "
                "not decrypted.",
                "cps",
                series(
                    or_zero(f"sum by (action) ({rate('auditproxy_tunnels_total')})"), "{{action}}"
                ),
            ).min(0)
        ),
        table_panel(
            20,
            "Versions",
            "auditproxy and mitmproxy versions per proxy instance.",
            "none",
            instant(
                f"max by (instance, version, mitmproxy_version) ({sel('auditproxy_build_info')})"
            ),
            columns={
                "instance": "Instance",
                "version": "auditproxy",
                "mitmproxy_version": "mitmproxy",
            },
            value_header="Info",
        ),
        # Several instances behind a load balancer (docs/scaling.md).
        (
            timeseries_panel(
                21,
                "Requests by instance",
                "Request rate per proxy instance (per second): how evenly the load balancer "
                "spreads the work. One instance uses at most one core; when the busiest nears "
                "its measured capacity (docs/scaling.md), add an instance.",
                "reqps",
                series(f"sum by (instance) ({rate(REQ)})", "{{instance}}"),
            ).min(0)
        ),
        (
            timeseries_panel(
                22,
                "Instances on the notice state fallback",
                "Proxy instances answering the daily notice state from their own memory because "
                "the configured store (Redis or SQLite) fails. While above zero those instances "
                "decide alone, so a person may see the notice once per instance that day; each "
                "goes back to the store by itself when it works again (errors by stage: state).",
                "short",
                series(f"sum({sel('auditproxy_state_backend', ON_MEMORY)})", "on memory"),
            )
            .min(0)
            .decimals(0)
        ),
        table_panel(
            23,
            "Notice state by instance",
            "The daily notice state each instance uses now: redis (shared by all instances), "
            "sqlite (this instance's own file), or memory (the fallback while the configured "
            "store fails).",
            "none",
            instant(f"max by (instance, backend) ({sel('auditproxy_state_backend')}) == 1"),
            columns={"instance": "Instance", "backend": "Notice state"},
            value_header="In use",
        ),
        # Every connection accounted for (issue #12): watch these during a CA roll-out.
        (
            timeseries_panel(
                24,
                "TLS failures by category and reason",
                "Failed TLS handshakes per minute, by the policy's category and the reason "
                "(certificate-rejected: the client does not trust the proxy's CA yet, the "
                "thing to watch during a CA roll-out; closed-during-handshake: often the "
                "same; server-certificate-invalid: the site's own certificate failed). The "
                "access log's tls-failed records name the clients.",
                "cpm",
                series(
                    or_zero(
                        f"60 * sum by (category, reason) ({rate('auditproxy_tls_failures_total')})"
                    ),
                    "{{category}}: {{reason}}",
                ),
            ).min(0)
        ),
        (
            timeseries_panel(
                25,
                "Refusals by reason",
                "Requests and connections the proxy refused, per minute: clients outside the "
                "policy's networks, and destinations it never connects to (loopback, "
                "link-local and cloud metadata, the proxy's own host, the policy's list). "
                "A steady rate from one source is someone probing.",
                "cpm",
                series(
                    or_zero(f"60 * sum by (reason) ({rate('auditproxy_refusals_total')})"),
                    "{{reason}}",
                ),
            ).min(0)
        ),
    ]


# --------------------------------------------------------------------------------------
# Dashboards.
# --------------------------------------------------------------------------------------


class _QueryVariableModel(model.VariableModel):
    """The SDK's variable model plus `definition`, the query as text. Grafana's editor
    writes it for a Prometheus query variable and lists it on the Variables page; the
    SDK cannot express it (its VariableModel, from Grafana's dashboard schema, has no such
    field), so this subclass adds it to the JSON."""

    def __init__(self, variable: model.VariableModel, definition: str) -> None:
        super().__init__()
        vars(self).update(vars(variable))
        self.definition = definition

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "definition": self.definition}


class QueryVariable(dashboard.QueryVariable):
    """The SDK's query variable builder, for a Prometheus `label_values(...)` query."""

    def __init__(self, name: str, query: str) -> None:
        super().__init__(name)
        self._definition = query
        self.query(
            {
                "qryType": 1,
                "query": query,
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
            }
        )

    def build(self) -> model.VariableModel:
        return _QueryVariableModel(super().build(), self._definition)


def query_variable(name: str, label: str, query: str, description: str) -> QueryVariable:
    """Multi-value with All (any value, `.+`), refreshed on time range change: instances
    come and go."""
    return (
        QueryVariable(name, query)
        .label(label)
        .description(description)
        .datasource(DS)
        .hide(model.VariableHide.DONT_HIDE)
        .include_all(True)
        .all_value(".+")
        .multi(True)
        .options([])
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def scope_variables() -> list[dashboard.DatasourceVariable | QueryVariable]:
    return [
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .hide(model.VariableHide.DONT_HIDE)
        .include_all(False)
        .multi(False)
        .regex(""),
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


def layout(panels: list[Panel]) -> list[Panel]:
    """Flow panels left to right in Grafana's 24-column grid, wrapping like text.

    Positions are set here rather than by the SDK's Dashboard.with_panel, which wraps only
    once a row is full: a 12-wide panel after a 4-wide one would land at x=16 and overflow.
    (with_panel keeps a position that is set, except 0,0, which it also gives the first.)
    """
    ids = [p.build().id_val for p in panels]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate panel ids: {ids}")
    x, y, row_h = 0, 0, 0
    for panel in panels:
        pos = panel.build().grid_pos
        assert pos is not None  # span() and height() made it
        if x + pos.w > 24:
            x, y, row_h = 0, y + row_h, 0
        panel.grid_pos(model.GridPos(h=pos.h, w=pos.w, x=x, y=y))
        x += pos.w
        row_h = max(row_h, pos.h)
    return panels


def build_dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    extra_variables: list[QueryVariable] | None = None,
) -> model.Dashboard:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("browser")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time("now-6h", "now")
        .fiscal_year_start_month(0)
        .live_now(False)
        .version(1)
        .annotation(
            dashboard.AnnotationQuery()
            .built_in(1)
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .name("Annotations & Alerts")
            .type("dashboard")
        )
        .link(
            dashboard.DashboardLink("auditproxy")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
            .icon("external link")
            .target_blank(False)
            .tooltip("")
            .url("")
        )
        .variables([*scope_variables(), *(extra_variables or [])])
    )
    for panel in layout(panels):
        board.with_panel(panel)
    return board.build()


def build() -> dict[str, model.Dashboard]:
    category = query_variable(
        "category",
        "Category",
        'label_values(auditproxy_requests_total{job=~"$job", instance=~"$instance"}, category)',
        "Policy categories (other: unclassified traffic).",
    )
    return {
        "monitored-access.json": build_dashboard(
            "auditproxy-monitored-access",
            "auditproxy / Monitored access",
            "For the security team: what the department's staff reach through the proxy, "
            "by policy category and site, the daily notices, blocks, refused clients and "
            "bypassed tunnels. Metadata only: no users, addresses or URLs are in metrics.",
            monitored_access_panels(),
            [category],
        ),
        "proxy-health.json": build_dashboard(
            "auditproxy-proxy-health",
            "auditproxy / Proxy health",
            "For IT: is the proxy up, how fast and how healthy, the add-on's own overhead, "
            "its errors, the access log, the policy in force and the daily notice's skips.",
            proxy_health_panels(),
        ),
    }


def render(board: model.Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed JSON differs from the code"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args(argv)
    stale = []
    for name, board in build().items():
        path = args.out / name
        text = render(board)
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
            f"\nout of date: {', '.join(stale)}; run: .venv/bin/python dashboards/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
