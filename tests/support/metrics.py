"""What the add-on's metric registry exports, as Prometheus names it after a scrape."""

from __future__ import annotations

from auditproxy.sinks.metrics import Metrics


def exported_names(metrics: Metrics | None = None) -> set[str]:
    """Every metric name the registry exports (counters with `_total`, histograms with
    `_bucket`, `_count` and `_sum`)."""
    names: set[str] = set()
    for family in (metrics or Metrics()).registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names
