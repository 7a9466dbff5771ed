#!/usr/bin/env bash
# Try auditproxy's metrics and alerts without containers: start Prometheus from the
# distribution's package against a running proxy, on 127.0.0.1, with a throw-away data
# folder and the alert rules from deploy/prometheus/alerts.yml.
#
#   sudo apt-get install --no-install-recommends prometheus   # Debian / Ubuntu
#   auditproxy run &                                          # metrics on 127.0.0.1:9464
#   scripts/monitor-local.sh                                  # then open the URL it prints
#
# Stop it with Ctrl-C; its data folder is removed on exit. See deploy/README.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/monitor-local.sh [options]

  --target HOST:PORT       the proxy's metrics endpoint (default 127.0.0.1:9464)
  --listen HOST:PORT       where Prometheus listens (default 127.0.0.1:9090)
  --scrape-interval DUR    how often to scrape and evaluate rules (default 5s)
  --check                  write the configuration, check it with promtool, and exit
  -h, --help               this help

Environment: PROMETHEUS and PROMTOOL name the binaries if they are not on PATH.
USAGE
}

target=127.0.0.1:9464
listen=127.0.0.1:9090
interval=5s
check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target=${2:?--target needs HOST:PORT}; shift 2 ;;
        --listen) listen=${2:?--listen needs HOST:PORT}; shift 2 ;;
        --scrape-interval) interval=${2:?--scrape-interval needs a duration, e.g. 5s}; shift 2 ;;
        --check) check=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "monitor-local.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rules=$repo/deploy/prometheus/alerts.yml
prometheus=${PROMETHEUS:-$(command -v prometheus || true)}
promtool=${PROMTOOL:-$(command -v promtool || true)}
if [ "$check" = 1 ] && [ -z "$promtool" ]; then
    echo "monitor-local.sh: promtool not found; install it: sudo apt-get install prometheus" >&2
    exit 1
fi
if [ "$check" = 0 ] && [ -z "$prometheus" ]; then
    echo "monitor-local.sh: prometheus not found; install it:" >&2
    echo "  sudo apt-get install --no-install-recommends prometheus" >&2
    exit 1
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/auditproxy-prometheus.XXXXXX")
pid=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

cp "$rules" "$workdir/alerts.yml"
cat >"$workdir/prometheus.yml" <<CONFIG
# Written by scripts/monitor-local.sh; removed when it exits.
global:
  scrape_interval: $interval
  evaluation_interval: $interval
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: auditproxy # the alert rules expect this job name
    static_configs:
      - targets: ["$target"]
CONFIG

if [ "$check" = 1 ]; then
    "$promtool" check config "$workdir/prometheus.yml"
    exit
fi

if command -v curl >/dev/null && ! curl -fs -o /dev/null --max-time 2 "http://$target/healthz"; then
    echo "monitor-local.sh: warning: no healthy proxy at http://$target/healthz yet;" \
        "Prometheus will keep trying (start it with: auditproxy run)" >&2
fi

"$prometheus" \
    --config.file="$workdir/prometheus.yml" \
    --storage.tsdb.path="$workdir/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="$listen" \
    --log.level=warn &
pid=$!

cat <<MESSAGE
Prometheus $("$prometheus" --version 2>&1 | head -n1 | awk '{print $3}') is scraping http://$target/metrics every $interval.
  Open:    http://$listen/graph   (try: sum by (category) (rate(auditproxy_requests_total[1m])))
  Targets: http://$listen/targets
  Alerts:  http://$listen/alerts
Press Ctrl-C to stop; the data in $workdir is removed.
MESSAGE

wait "$pid"
