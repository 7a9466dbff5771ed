"""The Grafana dashboards: generated from code, and every query sound before Prometheus sees it.

- the committed JSON is exactly what dashboards/generate.py makes, and it is Grafana's
  dashboard model as the SDK that generates it knows it (a lossless round trip through
  `grafana_foundation_sdk`'s typed model for Grafana 11.6, bar the query variables'
  `definition`, which that model lacks);
- every query parses (PyPI `promql-parser`, and `promtool` when it is installed), names only
  metrics the add-on's registry really exports (or Prometheus's `up`), carries the job and
  instance variables, and uses `$__rate_interval` in every rate;
- every panel has a description and a unit Grafana knows, and the unit fits the query;
- the datasource, job and instance variables are there, and every panel uses the datasource
  variable.

tests/e2e/test_prometheus.py then runs every query against a real Prometheus.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from support.metrics import exported_names

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "dashboards"
FILES = ("monitored-access.json", "proxy-health.json")

# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts): the ones a
# proxy dashboard can need. A typo here shows raw numbers with no unit in Grafana.
GRAFANA_UNITS = {
    "none", "short", "percent", "percentunit", "locale", "string",
    "bytes", "decbytes", "Bps", "bps",
    "s", "ms", "µs", "ns", "dtdurations",
    "cps", "ops", "reqps", "cpm", "opm",
}  # fmt: skip
PER_SECOND_UNITS = {"reqps", "cps", "ops", "Bps", "bps"}
PER_MINUTE_UNITS = {"cpm", "opm"}

# Stand-ins for Grafana's variables, so that queries parse and can be inspected.
RATE_INTERVAL = timedelta(seconds=7777)
RANGE = timedelta(seconds=8888)
SUBSTITUTIONS = {
    "$__rate_interval": "7777s",
    "$__range": "8888s",
    "$job": "JOB_VARIABLE",
    "$instance": "INSTANCE_VARIABLE",
    "$category": "CATEGORY_VARIABLE",
}
RATE_FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv"}


def load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: dict
    target: dict

    @property
    def expr(self) -> str:
        return self.target["expr"]

    @property
    def substituted(self) -> str:
        expr = self.expr
        for name, value in SUBSTITUTIONS.items():
            expr = expr.replace(name, value)
        return expr

    def __str__(self) -> str:
        return f"{self.dashboard}#{self.panel['id']}{self.target['refId']}"


def panels() -> Iterator[tuple[str, dict]]:
    for name in FILES:
        for panel in load(name)["panels"]:
            yield name, panel


QUERIES = [Query(n, p, t) for n, p in panels() for t in p.get("targets", [])]


def test_there_are_queries() -> None:
    assert len(QUERIES) >= 35


# ---------------------------------------------------------------------------- generated


def _generator():
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_committed_json_is_what_the_code_generates(tmp_path: Path) -> None:
    generate = _generator()
    assert generate.main(["--out", str(tmp_path)]) == 0
    for name in FILES:
        assert (tmp_path / name).read_text() == (DASHBOARDS / name).read_text(), (
            f"dashboards/{name} is out of date: run python dashboards/generate.py"
        )
    assert generate.main(["--check"]) == 0


def test_generation_is_deterministic() -> None:
    generate = _generator()
    first = {n: generate.render(m) for n, m in generate.build().items()}
    second = {n: generate.render(m) for n, m in generate.build().items()}
    assert first == second
    assert set(first) == set(FILES)


def test_json_round_trips_through_grafanas_typed_model() -> None:
    """Nothing in the JSON is outside Grafana's dashboard schema (as the SDK generated for
    the targeted Grafana has it), and nothing is lost or reshaped when read back: a hand
    edit with a typo'd key or a field of another Grafana version shows up here. The one
    known exception is `definition` on query variables (see generate.py)."""
    register_default_plugins()  # panel options and queries parse into their own types
    for name in FILES:
        committed = load(name)
        read_back = json.loads(json.dumps(Dashboard.from_json(committed), cls=JSONEncoder))
        for variable in committed["templating"]["list"]:
            if variable["type"] == "query":
                assert variable.pop("definition") == variable["query"]["query"], name
        assert read_back == committed, name


# ---------------------------------------------------------------------------- PromQL


try:
    import promql_parser
except ImportError:  # pragma: no cover - a test extra: pip install promql-parser
    promql_parser = None

needs_parser = pytest.mark.skipif(promql_parser is None, reason="pip install promql-parser")


def walk(node) -> Iterator:
    """Every node of a promql_parser expression, depth first."""
    yield node
    children = []
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            children.append(child)
    children.extend(getattr(node, "args", None) or [])
    for child in children:
        if isinstance(child, promql_parser.Expr | promql_parser.VectorSelector):
            yield from walk(child)


def selectors(expr: str) -> list:
    return [
        n for n in walk(promql_parser.parse(expr)) if isinstance(n, promql_parser.VectorSelector)
    ]


def metric_name(selector) -> str | None:
    if selector.name:
        return selector.name
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__":
            return matcher.value
    return None


@needs_parser
@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_query_parses(query: Query) -> None:
    promql_parser.parse(query.substituted)


@needs_parser
@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_query_names_only_exported_metrics(query: Query) -> None:
    exported = exported_names() | {"up"}
    names = {metric_name(s) for s in selectors(query.substituted)}
    assert names, f"{query}: no metric in {query.expr}"
    assert names <= exported, f"{query}: {sorted(names - exported)} are not exported"


@needs_parser
@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_every_selector_is_scoped_to_the_job_and_instance_variables(query: Query) -> None:
    for selector in selectors(query.substituted):
        matchers = {(m.name, m.value) for m in selector.matchers.matchers}
        assert ("job", "JOB_VARIABLE") in matchers, f"{query}: {selector} ignores $job"
        assert ("instance", "INSTANCE_VARIABLE") in matchers, (
            f"{query}: {selector} ignores $instance"
        )


@needs_parser
@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_every_rate_uses_rate_interval(query: Query) -> None:
    """Time series use $__rate_interval; a total over the time range may use $__range."""
    calls = [
        n
        for n in walk(promql_parser.parse(query.substituted))
        if isinstance(n, promql_parser.Call) and n.func.name in RATE_FUNCTIONS
    ]
    for call in calls:
        (window,) = [a.range for a in call.args if isinstance(a, promql_parser.MatrixSelector)]
        if window == RANGE:
            assert call.func.name == "increase" and query.target["instant"], (
                f"{query}: [$__range] is for increase() totals in instant queries only"
            )
        else:
            assert window == RATE_INTERVAL, f"{query}: {call.func.name}() over {window}"
    assert "[$__interval]" not in query.expr and "irate(" not in query.expr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_queries_parse_with_promtool(tmp_path: Path) -> None:
    """Prometheus's own parser: every query as a recording rule, checked by promtool."""
    rules = [
        {"record": f"auditproxy:dashboard_query_{i}", "expr": q.substituted}
        for i, q in enumerate(QUERIES)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- panels


@pytest.mark.parametrize(
    ("name", "panel"),
    list(panels()),
    ids=lambda v: str(v.get("id", v)) if isinstance(v, dict) else v,
)
def test_panel_has_description_unit_and_datasource(name: str, panel: dict) -> None:
    assert len(panel.get("description", "").strip()) >= 20, f"{name}#{panel['id']}"
    unit = panel["fieldConfig"]["defaults"].get("unit")
    assert unit in GRAFANA_UNITS, f"{name}#{panel['id']}: unit {unit!r}"
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for target in panel["targets"]:
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert target["expr"].strip()


@pytest.mark.parametrize(
    ("name", "panel"),
    list(panels()),
    ids=lambda v: str(v.get("id", v)) if isinstance(v, dict) else v,
)
def test_unit_fits_the_query(name: str, panel: dict) -> None:
    """The complaint about community dashboards: units that do not match the numbers."""
    unit = panel["fieldConfig"]["defaults"]["unit"]
    where = f"{name}#{panel['id']} {panel['title']}"
    for target in panel["targets"]:
        expr = target["expr"]
        if "histogram_quantile(" in expr:
            assert unit == "s", f"{where}: a _seconds histogram is in seconds"
        elif ") / " in expr or ")) / " in expr:
            assert unit == "percentunit", f"{where}: a ratio of 0..1 is percentunit"
            assert panel["fieldConfig"]["defaults"].get("max", 1) == 1
        elif expr.startswith("60 * "):
            assert unit in PER_MINUTE_UNITS, f"{where}: per-minute value, unit {unit}"
        elif "rate(" in expr:
            assert unit in PER_SECOND_UNITS, f"{where}: per-second value, unit {unit}"
            if "_bytes_" in expr:
                assert unit == "Bps"
        elif "[$__range]" in expr:
            assert unit == "short", f"{where}: a count over the time range"


def test_panel_ids_titles_and_layout() -> None:
    for name in FILES:
        model = load(name)
        ids = [p["id"] for p in model["panels"]]
        titles = [p["title"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), name
        assert len(titles) == len(set(titles)), name
        cells: set[tuple[int, int]] = set()
        for panel in model["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, panel["id"])
            area = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & area, f"{name}#{panel['id']} overlaps another panel"
            cells |= area


# ---------------------------------------------------------------------------- variables


def test_datasource_job_and_instance_variables() -> None:
    for name in FILES:
        model = load(name)
        variables = {v["name"]: v for v in model["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus", name
        for var in ("job", "instance"):
            v = variables[var]
            assert v["type"] == "query", (name, var)
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert v["definition"] == v["query"]["query"]
            assert v["definition"].startswith("label_values(auditproxy_build_info")
            assert v["multi"] and v["includeAll"], (name, var)
        assert 'job=~"$job"' in variables["instance"]["definition"]
        assert model["uid"].startswith("auditproxy-") and "auditproxy" in model["tags"]
        assert model.get("id") is None and "__inputs" not in model  # imports as it is


def test_variable_queries_name_exported_metrics() -> None:
    exported = exported_names()
    for name in FILES:
        for var in load(name)["templating"]["list"]:
            if var["type"] != "query":
                continue
            metric = var["definition"].removeprefix("label_values(").split(",")[0].split("{")[0]
            assert metric in exported, (name, var["name"], metric)
