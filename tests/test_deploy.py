"""Deployment files: valid, consistent with each other, and naming files that exist.

Tools are used when installed and skipped with the reason otherwise; CI installs Debian's
`prometheus` package (promtool). Nothing here needs a container engine or a cluster:
compose, provisioning and manifests are checked statically (`kubectl kustomize` builds the
manifests offline when kubectl is there).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from auditproxy.policy.load import parse_policy

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "kubernetes"
SYSTEMD_UNIT = DEPLOY / "systemd" / "auditproxy.service"
MONITOR_LOCAL = REPO / "scripts" / "monitor-local.sh"

REQUIRED_ALERTS = {
    "AuditproxyDown",
    "AuditproxyErrorRatioHigh",
    "AuditproxyLogRecordsDropped",
    "AuditproxyPolicyReloadFailing",
    "AuditproxyAddonErrors",
    "AuditproxyNoticeSkipRatioHigh",
    "AuditproxyHookLatencyHigh",
}
ACCESS_LOG = "/var/log/auditproxy/access.log"
# Every instance's log: access.log (one instance), access-N.log (auditproxy@N.service).
ACCESS_LOGS = "/var/log/auditproxy/access*.log"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (apt-get install --no-install-recommends prometheus)",
)


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def alerts() -> dict:
    return load_yaml(PROMETHEUS / "alerts.yml")


def alert_names() -> set[str]:
    return {r["alert"] for g in alerts()["groups"] for r in g["rules"]}


# ---------------------------------------------------------------------------- Prometheus


@needs_promtool
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_check_config(config: str) -> None:
    result = run("promtool", "check", "config", str(PROMETHEUS / config))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    result = run("promtool", "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    result = run("promtool", "test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_local_monitoring_config_checks() -> None:
    result = run("bash", str(MONITOR_LOCAL), "--check", "--target", "127.0.0.1:9464")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_monitor_local_script_is_sound() -> None:
    assert run("bash", "-n", str(MONITOR_LOCAL)).returncode == 0
    assert MONITOR_LOCAL.stat().st_mode & 0o111, "scripts/monitor-local.sh is not executable"
    help_text = run("bash", str(MONITOR_LOCAL), "--help").stdout
    for option in ("--target", "--listen", "--scrape-interval", "--check"):
        assert option in help_text
    if shutil.which("shellcheck"):
        result = run("shellcheck", str(MONITOR_LOCAL))
        assert result.returncode == 0, result.stdout


def test_python_snippets_in_deploy_files_import_what_exists() -> None:
    """Units and compose files run `python -c "from auditproxy... import ..."`: every such
    import must name a module and a name the package has (a rename breaks them silently)."""
    pattern = re.compile(r"from (auditproxy[\w.]*) import (\w+)|import (auditproxy[\w.]*)")
    found = 0
    for path in [*DEPLOY.rglob("*"), REPO / "deploy" / "docker" / "install-from-lock.sh"]:
        if not path.is_file() or path.suffix in {".md", ".json"}:
            continue
        for module, name, bare in pattern.findall(path.read_text(encoding="utf-8")):
            imported = importlib.import_module(module or bare)
            assert not name or hasattr(imported, name), f"{path}: {module}.{name}"
            found += 1
    assert found >= 3


SHELL_SCRIPTS = [
    REPO / ".ci" / "run",
    *(REPO / "scripts").glob("*.sh"),
    *(REPO / "scripts" / name for name in ("run", "test", "lock", "test-newest")),
    REPO / "bench" / "run",
    DOCKER / "install-from-lock.sh",
]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("apt-get install shellcheck")
    result = run("shellcheck", "-x", "-P", "SCRIPTDIR", "-P", str(REPO), str(script))
    assert result.returncode == 0, result.stdout


def test_required_alerts_exist_with_severity_and_text() -> None:
    assert alert_names() >= REQUIRED_ALERTS
    for group in alerts()["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")
    assert tests["rule_files"] == ["alerts.yml"]
    fired, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == alert_names(), f"never fired in a test: {alert_names() - fired}"
    assert quiet == alert_names(), f"no negative case: {alert_names() - quiet}"


def test_every_prometheus_config_scrapes_job_auditproxy() -> None:
    """AuditproxyDown and AuditproxyTargetMissing look for up{job="auditproxy"}."""
    configs = [load_yaml(PROMETHEUS / f) for f in ("prometheus.yml", "prometheus-compose.yml")]
    script = MONITOR_LOCAL.read_text(encoding="utf-8")
    assert "job_name: auditproxy" in script
    for config in configs:
        assert [j["job_name"] for j in config["scrape_configs"]] == ["auditproxy"]
        assert config["rule_files"] == ["alerts.yml"]
    servicemonitor = load_yaml(K8S / "servicemonitor.yaml")
    assert servicemonitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    service = [
        d for d in load_all(K8S / "service.yaml") if d["metadata"]["name"].endswith("-metrics")
    ]
    assert service[0]["metadata"]["labels"]["app.kubernetes.io/name"] == "auditproxy"


# ---------------------------------------------------------------------------- docker


def compose() -> dict:
    return load_yaml(DOCKER / "docker-compose.yml")


def compose_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path for the service's bind mounts (relative sources)."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (DOCKER / source).resolve()
    return mounts


def host_path(service: str, container_path: str) -> Path:
    for target, source in compose_mounts(service).items():
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{service}: nothing mounted at {container_path}")


def test_compose_bind_mounts_and_build_exist() -> None:
    services = compose()["services"]
    assert set(services) == {
        "auditproxy-init",  # makes the CA and pseudonym key once, before the replicas
        "auditproxy",
        "redis",
        "haproxy",
        "prometheus",
        "grafana",
    }
    for name in services:
        for source in compose_mounts(name).values():
            assert source.exists(), f"{name}: {source} does not exist"
    build = services["auditproxy"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()
    for name, service in services.items():
        if "build" not in service and not service.get("image", "").startswith("auditproxy"):
            assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), "pin images"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_compose_prometheus_config_and_rules_are_mounted() -> None:
    command = compose()["services"]["prometheus"]["command"]
    (config_flag,) = [c for c in command if c.startswith("--config.file=")]
    config = host_path("prometheus", config_flag.split("=", 1)[1])
    assert config == PROMETHEUS / "prometheus-compose.yml"
    for rule_file in load_yaml(config)["rule_files"]:
        assert (config.parent / rule_file).is_file()


def test_grafana_provisioning_names_files_that_exist() -> None:
    grafana = compose()["services"]["grafana"]
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    assert datasources[0]["jsonData"]["timeInterval"] == "15s"
    assert load_yaml(PROMETHEUS / "prometheus-compose.yml")["global"]["scrape_interval"] == "15s"
    (provider,) = load_yaml(provisioning / "dashboards" / "auditproxy.yml")["providers"]
    folder = host_path("grafana", provider["options"]["path"])
    assert folder == REPO / "dashboards"
    assert {p.name for p in folder.glob("*.json")} == {
        "monitored-access.json",
        "proxy-health.json",
    }
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).is_file()


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_files_that_exist_and_the_build_context_allows() -> None:
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    copies = [rest for word, rest in dockerfile_instructions() if word == "COPY"]
    assert copies
    for rest in copies:
        args = shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        for source in args[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
            assert not source.endswith((".pem", ".key", ".p12"))


def test_dockerfile_is_non_root_slim_and_healthchecked() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"].startswith("python:3.12-slim")
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms) and len(froms) == 2
    (user,) = [rest for word, rest in instructions if word == "USER"]
    assert not user.startswith(("root", "0"))
    # Installed from the lock by the script tests/e2e/test_install.py runs for real.
    runs = [rest for word, rest in instructions if word == "RUN"]
    assert any("deploy/docker/install-from-lock.sh" in run for run in runs)
    copied = " ".join(rest for word, rest in instructions if word == "COPY")
    assert "uv.lock" in copied and "scripts/uv-requirements.txt" in copied
    (healthcheck,) = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    (cmd,) = [json.loads(rest) for word, rest in instructions if word == "CMD"]
    (entrypoint,) = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    assert entrypoint == ["auditproxy", "run"]
    policy = cmd[cmd.index("--policy") + 1]
    assert policy.startswith("/etc/auditproxy/policy/")
    assert "--metrics-host" in cmd and cmd[cmd.index("--metrics-host") + 1] == "0.0.0.0"
    compose_policy_mount = host_path("auditproxy", policy)
    assert compose_policy_mount.is_file(), "compose's policy mount hides the image's policy"


# ---------------------------------------------------------------------------- kubernetes


def manifests() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in {"kustomization.yaml", "secrets.example.yaml"}:
            continue
        for doc in load_all(path):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def test_kustomization_lists_every_manifest() -> None:
    resources = load_yaml(K8S / "kustomization.yaml")["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert set(resources) == on_disk
    assert "secrets.example.yaml" not in resources  # placeholders are never applied


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds() -> None:
    result = run("kubectl", "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert {"Deployment", "Service", "ConfigMap", "ServiceMonitor", "NetworkPolicy"} <= kinds


def test_deployment_probes_security_and_references() -> None:
    docs = manifests()
    deployment = docs[("Deployment", "auditproxy")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container["resources"]["limits"]
    (proxy,) = pod["containers"]
    for probe in ("livenessProbe", "startupProbe"):
        assert proxy[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    # Readiness is /readyz (issue #13): what takes a pod out of the Service, not a restart.
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports == {"proxy": 8080, "metrics": 9464}
    args = dict(a.removeprefix("--").split("=", 1) for a in proxy["args"])
    assert args["listen-port"] == "8080" and args["metrics-port"] == "9464"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    assert mounts[str(Path(args["policy"]).parent)] == "policy"
    configmap = docs[("ConfigMap", volumes["policy"]["configMap"]["name"])]
    assert Path(args["policy"]).name in configmap["data"]
    assert "subPath" not in json.dumps(proxy["volumeMounts"]), "subPath blocks ConfigMap updates"
    secrets = {d["metadata"]["name"]: d for d in load_all(K8S / "secrets.example.yaml")}
    for volume in volumes.values():
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            assert name in secrets, f"{name}: no template in secrets.example.yaml"
    init_script = pod["initContainers"][0]["args"][0]
    for secret in secrets.values():
        for key in secret["stringData"]:
            assert key in init_script, f"the init container does not install {key}"
            assert "REPLACE-ME" in secret["stringData"][key]
    assert args["pseudonym-key"] in init_script and args["confdir"] in init_script


def test_services_and_servicemonitor_select_the_pods() -> None:
    docs = manifests()
    pod_labels = docs[("Deployment", "auditproxy")]["spec"]["template"]["metadata"]["labels"]
    ports = {"proxy", "metrics"}
    for (kind, _), doc in docs.items():
        if kind == "Service":
            assert doc["spec"]["selector"].items() <= pod_labels.items()
            assert {p["targetPort"] for p in doc["spec"]["ports"]} <= ports
    proxy_service = docs[("Service", "auditproxy")]["spec"]
    assert proxy_service["externalTrafficPolicy"] == "Local"
    monitor = docs[("ServiceMonitor", "auditproxy")]["spec"]
    metrics_service = docs[("Service", "auditproxy-metrics")]
    assert (
        monitor["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    )
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in metrics_service["spec"]["ports"]}
    netpol = docs[("NetworkPolicy", "auditproxy")]["spec"]
    assert netpol["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_policy_configmap_is_the_example_policy_and_valid() -> None:
    configmap = load_yaml(K8S / "policy-configmap.yaml")
    text = configmap["data"]["policy.yaml"]
    parse_policy(text.encode("utf-8"), source="policy-configmap.yaml")
    assert text == (REPO / "policy" / "department.yaml").read_text(encoding="utf-8"), (
        "deploy/kubernetes/policy-configmap.yaml differs from policy/department.yaml: copy "
        "the policy under data.policy.yaml (indented four spaces)"
    )


def test_prometheusrule_is_alerts_yml() -> None:
    rule = load_yaml(K8S / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == alerts(), "deploy/kubernetes/prometheusrule.yaml: copy alerts.yml"


def test_no_keys_or_certificates_in_deploy() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not re.search(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----", text), path
            assert path.suffix not in {".pem", ".key", ".p12", ".crt"}, path


# ---------------------------------------------------------------------------- systemd


def unit() -> dict[str, list[str]]:
    """Key -> values of the unit file (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", SYSTEMD_UNIT.read_text(encoding="utf-8"))
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_systemd_unit_is_hardened() -> None:
    u = unit()
    expected = {
        "User": "auditproxy",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "LimitNOFILE": "65536",
        "StateDirectory": "auditproxy",
        "LogsDirectory": "auditproxy",
    }
    for key, value in expected.items():
        assert u.get(key) == [value], f"{key}={u.get(key)}"
    assert u["MemoryMax"] and u["SystemCallFilter"][0] == "@system-service"
    assert "DynamicUser" not in u  # its own, stable user: file ownership survives restarts


def test_systemd_unit_paths_agree_with_logrotate_and_shippers() -> None:
    start = shlex.split(unit()["ExecStart"][0])
    flags = dict(zip(start[2::2], start[3::2], strict=False))
    assert start[1] == "run"
    assert flags["--access-log"] == ACCESS_LOG
    assert flags["--confdir"].startswith("/var/lib/auditproxy/")  # StateDirectory: writable
    assert flags["--state"].startswith("/var/lib/auditproxy/")
    assert flags["--policy"] in unit()["ExecStartPre"][0]
    logrotate = (DEPLOY / "logrotate" / "auditproxy").read_text(encoding="utf-8")
    assert fnmatch.fnmatch(ACCESS_LOG, ACCESS_LOGS) and fnmatch.fnmatch(
        "/var/log/auditproxy/access-2.log", ACCESS_LOGS
    )
    assert not fnmatch.fnmatch("/var/log/auditproxy/access.log-20261122-1", ACCESS_LOGS)
    assert ACCESS_LOGS + " {" in logrotate
    assert re.search(r"^\s*create 0640 auditproxy auditproxy$", logrotate, re.M)
    assert "copytruncate" not in re.sub(r"#.*", "", logrotate)
    assert (
        ACCESS_LOGS in load_yaml(DEPLOY / "logging" / "filebeat.yml")["filebeat.inputs"][0]["paths"]
    )
    vector = tomllib.loads((DEPLOY / "logging" / "vector.toml").read_text(encoding="utf-8"))
    assert vector["sources"]["auditproxy_access"]["include"] == [ACCESS_LOGS]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """The binary paths are pointed at this checkout's `auditproxy` so that verify can look."""
    beside_python = Path(sys.executable).parent / "auditproxy"  # the venv, not on PATH in CI
    auditproxy = str(beside_python) if beside_python.exists() else shutil.which("auditproxy")
    if auditproxy is None:
        pytest.skip("the auditproxy command is not installed")
    text = SYSTEMD_UNIT.read_text(encoding="utf-8").replace(
        "/opt/auditproxy/bin/auditproxy", auditproxy
    )
    (tmp_path / "auditproxy.service").write_text(text)
    result = run("systemd-analyze", "verify", "--man=no", str(tmp_path / "auditproxy.service"))
    problems = [line for line in result.stderr.splitlines() if "auditproxy.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


# ---------------------------------------------------------------------------- the rest


def test_log_shippers_parse_and_do_not_remap() -> None:
    filebeat = load_yaml(DEPLOY / "logging" / "filebeat.yml")
    (source,) = filebeat["filebeat.inputs"]
    assert source["type"] == "filestream"
    assert source["parsers"] == [
        {
            "ndjson": {
                "target": "",
                "overwrite_keys": True,
                "expand_keys": True,
                "add_error_key": True,
            }
        }
    ]
    assert "processors" not in filebeat and "processors" not in source
    vector = tomllib.loads((DEPLOY / "logging" / "vector.toml").read_text(encoding="utf-8"))
    assert [t["type"] for t in vector["transforms"].values()] == ["remap"]
    assert (
        vector["transforms"]["auditproxy_ecs"]["source"].strip()
        == ". = parse_json!(string!(.message))"
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_pac_file(tmp_path: Path) -> None:
    """Run FindProxyForURL under node, with the PAC helpers a browser provides."""
    harness = tmp_path / "pac.js"
    harness.write_text(
        r"""
const fs = require("fs"), vm = require("vm");
const ip = (s) => s.split(".").reduce((a, b) => a * 256 + Number(b), 0);
const ctx = {
  isPlainHostName: (h) => !h.includes("."),
  dnsDomainIs: (h, d) => h.endsWith(d),
  isInNet: (h, p, m) => {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(h)) throw new Error("DNS lookup of " + h);
    return ((ip(h) & ip(m)) >>> 0) === ((ip(p) & ip(m)) >>> 0);
  },
  shExpMatch: () => { throw new Error("not used"); },
};
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), ctx);
const out = {};
for (const h of process.argv.slice(3)) out[h] = ctx.FindProxyForURL("https://" + h + "/", h);
console.log(JSON.stringify(out));
"""
    )
    hosts = {
        "www.facebook.com": "PROXY",
        "www.rbc.com": "PROXY",
        "8.8.8.8": "PROXY",
        "evilexample.gc.ca": "PROXY",
        "WWW.FACEBOOK.COM": "PROXY",
        "intranet.example.gc.ca": "DIRECT",
        "example.gc.ca": "DIRECT",
        "intranet": "DIRECT",
        "printer.local": "DIRECT",
        "10.1.2.3": "DIRECT",
        "192.168.0.10": "DIRECT",
        "127.0.0.1": "DIRECT",
    }
    result = run("node", str(harness), str(DEPLOY / "pac" / "proxy.pac"), *hosts)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    for host, kind in hosts.items():
        assert answers[host].split()[0] == kind, (host, answers[host])
        assert "DIRECT" not in answers[host] or kind == "DIRECT", "no DIRECT fallback"


def test_yaml_files_parse() -> None:
    for path in [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]:
        assert list(yaml.safe_load_all(path.read_text(encoding="utf-8"))), path


def test_the_shared_redis_requires_the_password_the_proxies_send() -> None:
    docs = manifests()
    redis_docs = {
        (d["kind"], d["metadata"]["name"]): d for d in load_all(K8S / "redis" / "redis.yaml")
    }
    redis = redis_docs[("Deployment", "auditproxy-redis")]["spec"]["template"]["spec"]
    redis = redis["containers"][0]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    (env,) = [e for e in redis["env"] if e["name"] == "REDIS_PASSWORD"]
    secret = env["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "auditproxy-redis", "key": "password"}  # never optional
    assert "REDISCLI_AUTH" in " ".join(redis["readinessProbe"]["exec"]["command"])
    proxy = docs[("Deployment", "auditproxy")]["spec"]["template"]["spec"]["containers"][0]
    (sent,) = [e for e in proxy["env"] if e["name"] == "REDIS_PASSWORD"]
    assert sent["valueFrom"]["secretKeyRef"] == secret
