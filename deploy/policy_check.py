#!/usr/bin/env python3
"""Policy tests for rendered Kubernetes manifests (the output of `kubectl kustomize`).

    python3 deploy/policy_check.py --env production rendered.yaml [--core-out core.yaml]
    python3 deploy/policy_check.py --self-test

Every violation is printed as `POLICY <file>: <Kind>/<name> <field path>: <what is wrong>` and the
exit status is 1 if there is at least one. --env production adds the production-only rules
(replicas, HPA and PDB floors, Pod Security Admission label).

The Kubernetes schema validator (kubernetes-validate) knows only built-in kinds. --core-out writes
the built-in objects to a file for it; the custom resources this repository uses are checked here
structurally instead (CUSTOM_CHECKS). Any other custom resource is a violation, so a new CRD never
slips through unvalidated.

Requires PyYAML.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

PROD_MIN_REPLICAS = 3
PROD_MIN_PDB_AVAILABLE = 2
# Margin between the server's own shutdown budget and the kubelet's SIGKILL.
GRACE_MARGIN_SECONDS = 5

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
# Environment variables that carry credentials and must come from a Secret, never a literal.
SECRET_ENV = re.compile(r"^(DATABASE_URL|REDIS_URL|SENTRY_DSN|PG(PASSWORD|PASSFILE)|.*(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|ACCESS_KEY|_DSN))$")
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)
DURATION = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")


class Report:
    def __init__(self) -> None:
        self.violations: list[str] = []

    def add(self, source: str, obj: dict | None, path: str, message: str) -> None:
        self.violations.append(f"POLICY {source}: {ident(obj)} {path}: {message}".replace("  ", " "))


def ident(obj: dict | None) -> str:
    if not obj:
        return ""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<unnamed>")
    return f"{obj.get('kind', '<no kind>')}/{ns + '/' if ns else ''}{name}"


# --- helpers -----------------------------------------------------------------------------------


def pod_spec(obj: dict) -> tuple[dict | None, dict | None, str]:
    """Return (pod template metadata, pod spec, field path) of a workload object."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return obj.get("metadata") or {}, spec, "spec"
    if kind == "CronJob":
        tmpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return tmpl.get("metadata") or {}, tmpl.get("spec"), "spec.jobTemplate.spec.template.spec"
    tmpl = spec.get("template") or {}
    return tmpl.get("metadata") or {}, tmpl.get("spec"), "spec.template.spec"


def containers(spec: dict, base: str) -> Iterator[tuple[dict, str, bool]]:
    """Yield (container, path, is_init) for containers, initContainers and ephemeralContainers."""
    for field, is_init in (("initContainers", True), ("containers", False), ("ephemeralContainers", True)):
        for i, c in enumerate(spec.get(field) or []):
            yield c, f"{base}.{field}[{i}]({c.get('name', '?')})", is_init


def seconds(value: object) -> float | None:
    """Parse a humantime-style duration (5s, 1m30s, 250ms) into seconds."""
    if not isinstance(value, str):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * factor[u] for n, u in parts)


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """Evaluate a LabelSelector (matchLabels + matchExpressions) or a plain Service selector."""
    if not selector:
        return False
    labels = labels or {}
    if "matchLabels" in selector or "matchExpressions" in selector:
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
    else:
        match_labels, expressions = selector, []
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in expressions:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(match_labels or expressions)


def is_core(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


# --- checks on built-in kinds --------------------------------------------------------------------


def check_workload(src: str, obj: dict, rep: Report) -> None:
    """What checkov's generic hardening checks (securityContext, capabilities, seccomp, probes,
    resources, image tags, host namespaces, service account tokens) leave out: hostPath volumes and
    credentials given as literals (checkov's CKV_K8S_35 is skipped because the server reads its URLs
    from the environment, so literal values must be refused here)."""
    _, spec, base = pod_spec(obj)
    if not isinstance(spec, dict):
        rep.add(src, obj, "spec", "no pod template")
        return
    for i, vol in enumerate(spec.get("volumes") or []):
        if "hostPath" in vol:
            rep.add(src, obj, f"{base}.volumes[{i}]", "hostPath volumes are not allowed")
    for c, path, _ in containers(spec, base):
        for j, env in enumerate(c.get("env") or []):
            name = env.get("name", "")
            if SECRET_ENV.match(name) and "valueFrom" not in env:
                rep.add(src, obj, f"{path}.env[{j}]({name})", "credential given as a literal; use valueFrom.secretKeyRef")
            elif isinstance(env.get("value"), str) and URL_WITH_PASSWORD.match(env["value"]):
                rep.add(src, obj, f"{path}.env[{j}]({name})", "URL with an embedded password; use valueFrom.secretKeyRef")


def check_secret(src: str, obj: dict, rep: Report) -> None:
    for field in ("data", "stringData"):
        if obj.get(field):
            rep.add(src, obj, field, "Secret with literal values in the repository; create it out of band (deploy/k8s/secrets.example.md)")


def check_configmap(src: str, obj: dict, rep: Report) -> None:
    for key, value in (obj.get("data") or {}).items():
        if SECRET_ENV.match(key):
            rep.add(src, obj, f"data.{key}", "credential in a ConfigMap; it belongs in a Secret")
        elif isinstance(value, str) and URL_WITH_PASSWORD.match(value):
            rep.add(src, obj, f"data.{key}", "URL with an embedded password in a ConfigMap")


def check_ingress(src: str, obj: dict, rep: Report) -> None:
    spec = obj.get("spec") or {}
    tls_hosts = {h for t in spec.get("tls") or [] for h in t.get("hosts") or []}
    for i, rule in enumerate(spec.get("rules") or []):
        host = rule.get("host")
        if host and host not in tls_hosts:
            rep.add(src, obj, f"spec.rules[{i}].host", f"{host} has no TLS entry")
        for j, p in enumerate((rule.get("http") or {}).get("paths") or []):
            path = p.get("path", "/")
            if not (path == "/api" or path.startswith("/api/")):
                rep.add(src, obj, f"spec.rules[{i}].http.paths[{j}].path", f"{path!r} is public; only /api may be routed")
    if spec.get("defaultBackend"):
        rep.add(src, obj, "spec.defaultBackend", "routes every path; only /api may be routed")


def check_cross_object(src: str, objects: list[dict], rep: Report, env: str) -> None:
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    batch = [o for o in objects if o.get("kind") in ("Job", "CronJob")]

    def template_labels(o: dict) -> dict:
        return (pod_spec(o)[0] or {}).get("labels") or {}

    # Traffic and disruption budgets must select the server pods and nothing else.
    for o in objects:
        kind = o.get("kind")
        if kind == "Service":
            selector, path = (o.get("spec") or {}).get("selector"), "spec.selector"
        elif kind == "PodDisruptionBudget":
            selector, path = (o.get("spec") or {}).get("selector"), "spec.selector"
        else:
            continue
        if not any(selector_matches(selector, template_labels(d)) for d in deployments):
            rep.add(src, o, path, "selects no Deployment's pods")
        for b in batch:
            if selector_matches(selector, template_labels(b)):
                rep.add(src, o, path, f"also selects the pods of {ident(b)}")

    config = {}
    for o in objects:
        if o.get("kind") == "ConfigMap":
            config.update(o.get("data") or {})
    drain = seconds(config.get("PALISADE_SERVER__SHUTDOWN_DRAIN_DELAY"))
    timeout = seconds(config.get("PALISADE_SERVER__SHUTDOWN_TIMEOUT"))
    for d in deployments:
        _, spec, base = pod_spec(d)
        grace = (spec or {}).get("terminationGracePeriodSeconds", 30)
        # A preStop sleep runs before SIGTERM, inside the same grace period.
        pre_stop = max((((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
                       for c in (spec or {}).get("containers") or [{}])
        if drain is not None and timeout is not None and grace < pre_stop + drain + timeout + GRACE_MARGIN_SECONDS:
            rep.add(src, d, f"{base}.terminationGracePeriodSeconds",
                    f"{grace}s is not above preStop {pre_stop}s + drain delay {drain:g}s + shutdown timeout "
                    f"{timeout:g}s + {GRACE_MARGIN_SECONDS}s margin")

    for o in objects:
        if o.get("kind") == "ServiceMonitor":
            sel = (o.get("spec") or {}).get("selector")
            services = [s for s in objects if s.get("kind") == "Service"
                        and selector_matches(sel, (s.get("metadata") or {}).get("labels"))]
            if not services:
                rep.add(src, o, "spec.selector", "matches no Service in this render")
            ports = {p.get("name") for s in services for p in (s.get("spec") or {}).get("ports") or []}
            for i, ep in enumerate((o.get("spec") or {}).get("endpoints") or []):
                if "port" in ep and services and ep["port"] not in ports:
                    rep.add(src, o, f"spec.endpoints[{i}].port", f"{ep['port']!r} is not a port name of the selected Service")

    if env != "production":
        return
    if not any(o.get("kind") == "Namespace" and ((o.get("metadata") or {}).get("labels") or {})
               .get("pod-security.kubernetes.io/enforce") == "restricted" for o in objects):
        rep.add(src, None, "Namespace", "production must create its Namespace with pod-security.kubernetes.io/enforce: restricted")
    hpas = [o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"]
    pdbs = [o for o in objects if o.get("kind") == "PodDisruptionBudget"]
    for d in deployments:
        name = d["metadata"]["name"]
        has_hpa = any(((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name for h in hpas)
        replicas = (d.get("spec") or {}).get("replicas")
        # Without spec.replicas the HPA alone owns the count (its minReplicas is checked below);
        # without either, Kubernetes runs a single pod.
        if replicas is None and not has_hpa:
            rep.add(src, d, "spec.replicas", f"unset (1 pod) and no HPA; production needs >= {PROD_MIN_REPLICAS}")
        elif replicas is not None and replicas < PROD_MIN_REPLICAS:
            rep.add(src, d, "spec.replicas", f"{replicas} < {PROD_MIN_REPLICAS} in production")
        if not has_hpa:
            rep.add(src, d, "", "no HorizontalPodAutoscaler targets it in production")
        if not any(selector_matches((p.get("spec") or {}).get("selector"), template_labels(d)) for p in pdbs):
            rep.add(src, d, "", "no PodDisruptionBudget covers it in production")
    for h in hpas:
        low = (h.get("spec") or {}).get("minReplicas", 1)
        if low < PROD_MIN_REPLICAS:
            rep.add(src, h, "spec.minReplicas", f"{low} < {PROD_MIN_REPLICAS} in production")
    for p in pdbs:
        spec = p.get("spec") or {}
        low = spec.get("minAvailable")
        if not isinstance(low, int):
            rep.add(src, p, "spec.minAvailable", f"must be an absolute number >= {PROD_MIN_PDB_AVAILABLE} in production, got {low!r}")
        elif low < PROD_MIN_PDB_AVAILABLE:
            rep.add(src, p, "spec.minAvailable", f"{low} < {PROD_MIN_PDB_AVAILABLE} in production")


# --- structural checks for custom resources (no bundled schema) --------------------------------


def _require(rep: Report, src: str, obj: dict, cond: bool, path: str, message: str) -> None:
    if not cond:
        rep.add(src, obj, path, message)


def _is_label_selector(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= {"matchLabels", "matchExpressions"}


def check_servicemonitor(src: str, obj: dict, rep: Report) -> None:
    spec = obj.get("spec")
    _require(rep, src, obj, isinstance(spec, dict), "spec", "missing")
    if not isinstance(spec, dict):
        return
    allowed = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
               "sampleLimit", "scrapeProtocols", "attachMetadata", "labelLimit", "fallbackScrapeProtocol"}
    for key in spec:
        _require(rep, src, obj, key in allowed, f"spec.{key}", "unknown field")
    _require(rep, src, obj, _is_label_selector(spec.get("selector")), "spec.selector", "must be a non-empty LabelSelector")
    endpoints = spec.get("endpoints")
    _require(rep, src, obj, isinstance(endpoints, list) and bool(endpoints), "spec.endpoints", "must be a non-empty list")
    for i, ep in enumerate(endpoints if isinstance(endpoints, list) else []):
        path = f"spec.endpoints[{i}]"
        if not isinstance(ep, dict):
            rep.add(src, obj, path, "must be a mapping")
            continue
        _require(rep, src, obj, isinstance(ep.get("port"), str) or "targetPort" in ep, path, "needs a port name")
        if "path" in ep:
            _require(rep, src, obj, isinstance(ep["path"], str) and ep["path"].startswith("/"), f"{path}.path", "must start with /")
        for dur in ("interval", "scrapeTimeout"):
            if dur in ep:
                _require(rep, src, obj, isinstance(ep[dur], str) and bool(DURATION.match(ep[dur])), f"{path}.{dur}", "not a duration")


def check_prometheusrule(src: str, obj: dict, rep: Report) -> None:
    spec = obj.get("spec")
    groups = spec.get("groups") if isinstance(spec, dict) else None
    _require(rep, src, obj, isinstance(groups, list) and bool(groups), "spec.groups", "must be a non-empty list")
    seen = set()
    for gi, group in enumerate(groups if isinstance(groups, list) else []):
        gpath = f"spec.groups[{gi}]"
        if not isinstance(group, dict):
            rep.add(src, obj, gpath, "must be a mapping")
            continue
        name = group.get("name")
        _require(rep, src, obj, isinstance(name, str) and bool(name), f"{gpath}.name", "missing")
        _require(rep, src, obj, name not in seen, f"{gpath}.name", f"duplicate group {name!r}")
        seen.add(name)
        for key in group:
            _require(rep, src, obj, key in {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"},
                     f"{gpath}.{key}", "unknown field")
        if "interval" in group:
            _require(rep, src, obj, bool(DURATION.match(str(group["interval"]))), f"{gpath}.interval", "not a duration")
        rules = group.get("rules")
        _require(rep, src, obj, isinstance(rules, list) and bool(rules), f"{gpath}.rules", "must be a non-empty list")
        for ri, rule in enumerate(rules if isinstance(rules, list) else []):
            rpath = f"{gpath}.rules[{ri}]"
            if not isinstance(rule, dict):
                rep.add(src, obj, rpath, "must be a mapping")
                continue
            for key in rule:
                _require(rep, src, obj, key in {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"},
                         f"{rpath}.{key}", "unknown field")
            _require(rep, src, obj, ("record" in rule) != ("alert" in rule), rpath, "needs exactly one of record or alert")
            _require(rep, src, obj, isinstance(rule.get("expr"), str) and rule["expr"].strip() != "", f"{rpath}.expr", "must be a non-empty string")
            if "record" in rule:
                _require(rep, src, obj, bool(re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", str(rule["record"]))), f"{rpath}.record", "not a valid metric name")
                _require(rep, src, obj, "for" not in rule and "annotations" not in rule, rpath, "recording rules take no for/annotations")
            if "alert" in rule:
                _require(rep, src, obj, bool(re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", str(rule["alert"]))), f"{rpath}.alert", "not a valid alert name")
            for dur in ("for", "keep_firing_for"):
                if dur in rule:
                    _require(rep, src, obj, bool(DURATION.match(str(rule[dur]))), f"{rpath}.{dur}", "not a duration")
            for field in ("labels", "annotations"):
                if field in rule:
                    value = rule[field]
                    _require(rep, src, obj, isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
                             f"{rpath}.{field}", "must map names to strings")


def check_externalsecret(src: str, obj: dict, rep: Report) -> None:
    spec = obj.get("spec")
    _require(rep, src, obj, isinstance(spec, dict), "spec", "missing")
    if not isinstance(spec, dict):
        return
    store = spec.get("secretStoreRef") or {}
    _require(rep, src, obj, isinstance(store.get("name"), str), "spec.secretStoreRef.name", "missing")
    _require(rep, src, obj, store.get("kind", "SecretStore") in ("SecretStore", "ClusterSecretStore"),
             "spec.secretStoreRef.kind", "must be SecretStore or ClusterSecretStore")
    _require(rep, src, obj, isinstance((spec.get("target") or {}).get("name"), str), "spec.target.name", "missing")
    data, data_from = spec.get("data"), spec.get("dataFrom")
    _require(rep, src, obj, bool(data) or bool(data_from), "spec", "needs data or dataFrom")
    for i, item in enumerate(data or []):
        _require(rep, src, obj, isinstance(item.get("secretKey"), str), f"spec.data[{i}].secretKey", "missing")
        _require(rep, src, obj, isinstance((item.get("remoteRef") or {}).get("key"), str), f"spec.data[{i}].remoteRef.key", "missing")
    if "refreshInterval" in spec:
        _require(rep, src, obj, bool(DURATION.match(str(spec["refreshInterval"]))), "spec.refreshInterval", "not a duration")


CUSTOM_CHECKS: dict[tuple[str, str], Callable[[str, dict, Report], None]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_servicemonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheusrule,
    ("external-secrets.io/v1beta1", "ExternalSecret"): check_externalsecret,
    ("external-secrets.io/v1", "ExternalSecret"): check_externalsecret,
}


# --- driver ------------------------------------------------------------------------------------


def check_documents(src: str, docs: list, env: str, rep: Report) -> list[dict]:
    """Check one rendered stream; return the built-in objects (for the schema validator)."""
    objects = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            rep.add(src, None, f"document {i}", "not a Kubernetes object (apiVersion and kind required)")
            continue
        if not (doc.get("metadata") or {}).get("name"):
            rep.add(src, doc, "metadata.name", "missing")
        objects.append(doc)

    core = []
    for obj in objects:
        kind, api = obj["kind"], obj["apiVersion"]
        if is_core(api):
            core.append(obj)
            if kind in WORKLOAD_KINDS:
                check_workload(src, obj, rep)
            elif kind == "Secret":
                check_secret(src, obj, rep)
            elif kind == "ConfigMap":
                check_configmap(src, obj, rep)
            elif kind == "Ingress":
                check_ingress(src, obj, rep)
        elif (api, kind) in CUSTOM_CHECKS:
            CUSTOM_CHECKS[(api, kind)](src, obj, rep)
        else:
            rep.add(src, obj, "apiVersion", f"custom resource {api} {kind} has neither a bundled schema nor a structural check here; add one to CUSTOM_CHECKS")
    check_cross_object(src, objects, rep, env)
    return core


def run(paths: list[Path], env: str, core_out: Path | None) -> int:
    rep = Report()
    core: list[dict] = []
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as err:
            rep.add(str(path), None, "", f"cannot read: {err}")
            continue
        core += check_documents(str(path), docs, env, rep)
    if core_out:
        core_out.write_text(yaml.safe_dump_all(core, sort_keys=False), encoding="utf-8")
    for line in rep.violations:
        print(line)
    names = ", ".join(str(p) for p in paths)
    if rep.violations:
        print(f"policy_check: {len(rep.violations)} violation(s) in {names} (env {env})", file=sys.stderr)
        return 1
    print(f"policy_check: {names} (env {env}): OK")
    return 0


# --- self-test ---------------------------------------------------------------------------------

_GOOD_CONTAINER = {
    "name": "app",
    "image": "ghcr.io/example/app:1.2.3",
    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
    "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
    "securityContext": {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}

_GOOD = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: app, labels: {{pod-security.kubernetes.io/enforce: restricted}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      automountServiceAccountToken: false
      containers: [{yaml.safe_dump(_GOOD_CONTAINER, default_flow_style=True).strip()}]
---
apiVersion: v1
kind: Service
metadata: {{name: app, labels: {{app: app}}}}
spec: {{selector: {{app: app}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: app}}
spec: {{scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}, minReplicas: 3, maxReplicas: 5}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: app}}
spec: {{minAvailable: 2, selector: {{matchLabels: {{app: app}}}}}}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {{name: app}}
spec: {{selector: {{matchLabels: {{app: app}}}}, endpoints: [{{port: http, path: /metrics}}]}}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {{name: app}}
spec:
  groups:
    - name: g
      rules:
        - {{record: "job:x:rate5m", expr: "sum(rate(x[5m]))"}}
        - {{alert: XHigh, expr: "job:x:rate5m > 1", for: 5m, labels: {{severity: warning}}}}
"""

_BAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: 1
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      hostNetwork: true
      volumes: [{name: host, hostPath: {path: /var/run}}]
      containers:
        - name: web
          image: nginx:latest
          env: [{name: DATABASE_URL, value: "postgres://u:p@db/x"}]
          securityContext: {runAsUser: 0, privileged: true, capabilities: {add: [NET_ADMIN]}}
      initContainers:
        - name: init
          image: busybox
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: bad}}
        spec: {restartPolicy: Never, containers: [{name: job, image: "busybox:1.36"}]}
---
apiVersion: v1
kind: Secret
metadata: {name: leaked}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {REDIS_URL: "redis://:pw@redis:6379", PALISADE_SERVER__SHUTDOWN_DRAIN_DELAY: 5s, PALISADE_SERVER__SHUTDOWN_TIMEOUT: 30s}
---
apiVersion: v1
kind: Service
metadata: {name: bad, labels: {app: bad}}
spec: {selector: {app: bad}, ports: [{name: http, port: 80}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: bad}
spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: bad}, minReplicas: 1, maxReplicas: 2}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: bad}
spec: {minAvailable: 1, selector: {matchLabels: {app: bad}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad}
spec:
  rules:
    - host: bad.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: bad, port: {name: http}}}}]}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: bad}
spec: {selector: {matchLabels: {app: nothing}}, endpoints: []}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: bad}
spec:
  groups:
    - name: g
      rules:
        - {record: "x", alert: "Y", expr: ""}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: unknown}
"""

# (substring of a violation line) that the bad manifest must produce, one per rule.
_EXPECTED = [
    "spec.template.spec.volumes[0]: hostPath volumes are not allowed",
    "env[0](DATABASE_URL): credential given as a literal",
    "Secret/leaked stringData: Secret with literal values",
    "ConfigMap/cfg data.REDIS_URL: credential in a ConfigMap",
    "Service/bad spec.selector: also selects the pods of CronJob/cron",
    "terminationGracePeriodSeconds: 30s is not above",
    "Deployment/bad spec.replicas: 1 < 3 in production",
    "HorizontalPodAutoscaler/bad spec.minReplicas: 1 < 3",
    "PodDisruptionBudget/bad spec.minAvailable: 1 < 2",
    "Namespace: production must create its Namespace",
    "Ingress/bad spec.rules[0].host: bad.example.com has no TLS entry",
    "Ingress/bad spec.rules[0].http.paths[0].path: '/' is public",
    "ServiceMonitor/bad spec.endpoints: must be a non-empty list",
    "ServiceMonitor/bad spec.selector: matches no Service",
    "PrometheusRule/bad spec.groups[0].rules[0]: needs exactly one of record or alert",
    "PrometheusRule/bad spec.groups[0].rules[0].expr: must be a non-empty string",
    "Widget/unknown apiVersion: custom resource example.com/v1 Widget",
]


def self_test() -> int:
    failures = []
    good = Report()
    check_documents("good.yaml", list(yaml.safe_load_all(_GOOD)), "production", good)
    if good.violations:
        failures.append("a compliant manifest was rejected:\n    " + "\n    ".join(good.violations))
    bad = Report()
    check_documents("bad.yaml", list(yaml.safe_load_all(_BAD)), "production", bad)
    for expected in _EXPECTED:
        if not any(expected in line for line in bad.violations):
            failures.append(f"expected a violation containing {expected!r}")
    if failures:
        print("policy_check self-test FAILED:\n  " + "\n  ".join(failures))
        print("violations reported for the bad manifest:\n  " + "\n  ".join(bad.violations))
        return 1
    print(f"policy_check self-test: OK (compliant manifest passes; bad manifest yields all {len(_EXPECTED)} expected violations)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="rendered manifests (multi-document YAML)")
    parser.add_argument("--env", default="base", help="production enables the production-only rules")
    parser.add_argument("--core-out", type=Path, help="write the built-in-kind objects here for kubernetes-validate")
    parser.add_argument("--self-test", action="store_true", help="check the checker against built-in good and bad manifests")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.files:
        parser.error("no files given")
    return run(args.files, args.env, args.core_out)


if __name__ == "__main__":
    sys.exit(main())
