#!/usr/bin/env python3
"""Validates deploy/ without a cluster or a Docker engine (run by scripts/validate-deploy.sh).

Checks, each printed as `ok` or `FAIL` with what failed:

- dockerfile: deploy/Dockerfile parses with BuildKit's own parser; multi-stage, a locked
  release build of the editfeed binary, a non-root runtime (USER 10001), the ports, the
  entrypoint and command; every file the build needs is inside the build context after
  deploy/Dockerfile.dockerignore, and target/, .git/, .venv/ are not.
- config: every editfeed.toml here (image default, ConfigMap, Helm renders) parses and
  uses only the daemon's keys, with the right types and valid dataset names.
- kubernetes: every manifest in deploy/kubernetes/ against the Kubernetes OpenAPI
  schemas (kubernetes-validate, strict: unknown fields are errors) for each version in
  --kubernetes-versions; kustomization.yaml lists exactly those files; the kustomize
  render (kubectl kustomize) is validated too; then the deployment policy below. It
  creates no Job. The pack Jobs in deploy/kubernetes/pack/ (a kustomization of their
  own) get the same schema checks, raw and rendered, and the pack policy below.
- helm: `helm lint --strict`, `helm template` with the default values, each
  ci/*-values.yaml and pack.enabled=true, every render validated like the manifests
  plus the policy; renders that must be refused (grace period below the drain, hostPort
  with maxSurge, unknown values, incomplete pack values) are; the default render
  matches the kustomize one, and the pack.enabled=true render's Jobs the pack
  kustomize render. Without helm, the static parts only (Chart.yaml, values.yaml
  against values.schema.json, templates).
- policy (on every set of objects): one DaemonSet on GPU nodes tolerating their taint,
  ports 50051/9090 agreeing with the config's listen addresses and the Prometheus
  annotations, gRPC startup/readiness/liveness probes, requests and limits, the
  restricted security context, a writable cache_dir, a grace period above drain_seconds,
  the AWS Secret optional, no service links, the node-local Service
  (internalTrafficPolicy Local, grpc 50051) and the headless peers Service selecting
  the daemon's pods, every referenced ConfigMap and ServiceAccount present.
- pack (on the pack Jobs, with the daemon's objects): an Indexed Job running `editfeed
  pack pico-banana --part $(JOB_COMPLETION_INDEX)/N --resume` with completions N,
  parallelism at most N, retries (backoffLimitPerIndex or backoffLimit), --threads
  between the CPU request and 4 per requested core, --out a folder per index; a merge Job naming each of the
  N part folders once, all inside its --out, with retries; both with the restricted
  security context, a writable /tmp, the daemon's namespace, ServiceAccount and
  credentials Secret (never a ConfigMap or a literal), and pod labels no Service or
  PodMonitor selects.
- grafana: the dashboard is JSON with a ${DS_PROMETHEUS} input, every query parses as
  PromQL (Grafana variables substituted) and selects only editfeed metrics with their
  labels, and every editfeed metric is on some panel. Metric names, types and labels
  come from src/metrics.rs and the metric calls in src/ (a built-in copy without them).

The last line is `validate-deploy: N passed, N failed`; the exit status is 1 on any
failure.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

# --------------------------------------------------------------------------------------
# What the daemon is (keep in step with src/config/ and src/metrics.rs).

# The config file's keys as the contract names them: kind is "int", "str", "bool",
# "size" (an integer or a string like "50GiB") or "table". Merged with the fields of
# `struct ServeConfig` / `struct StoreConfig` read from src/ (config_schema), so a key
# the code adds is accepted and a misspelt one is refused, as the daemon does.
CONFIG_TOP: dict[str, str] = {
    "listen": "str", "workers": "int", "prefetch_batches": "int", "queue_samples": "int",
    "max_streams": "int", "max_global_batch": "int", "max_image_side": "int",
    "max_batch_bytes": "int", "max_inflight_bytes": "int", "max_decode_pixels": "int", "http2_window_bytes": "int",
    "drain_seconds": "int", "metrics_listen": "str", "log_format": "str", "log_level": "str",
    "load_retry_seconds": "int", "store": "table", "datasets": "table",
    "admin_listen": "str", "state_dir": "str", "reshard_threads": "int", "reshard_queue_jobs": "int",
}
CONFIG_STORE: dict[str, str] = {
    "endpoint": "str", "region": "str", "allow_http": "bool", "cache_dir": "str", "cache_bytes": "size",
}
# Credentials belong in a Secret (the standard AWS_* variables), never in a ConfigMap.
CONFIG_SECRET_KEYS = {"access_key_id", "secret_access_key", "session_token"}
DEFAULT_DRAIN_SECONDS = 30
DATASET_NAME = re.compile(r"^(?!\.)[A-Za-z0-9._-]{1,64}$")

# metric name -> (type, labels). The names are read from src/metrics.rs when it defines
# any (see metrics_from_source); this copy of them is the fallback.
METRICS: dict[str, tuple[str, set[str]]] = {
    "editfeed_batches_sent_total": ("counter", {"subset"}),
    "editfeed_batch_bytes_sent_total": ("counter", {"subset"}),
    "editfeed_active_streams": ("gauge", set()),
    "editfeed_batch_prepare_seconds": ("histogram", set()),
    "editfeed_stage_seconds": ("histogram", {"stage"}),
    "editfeed_samples_replaced_total": ("counter", set()),
    "editfeed_pool_queued_jobs": ("gauge", set()),
    "editfeed_pool_busy_workers": ("gauge", set()),
    "editfeed_pool_workers": ("gauge", set()),
    "editfeed_store_requests_total": ("counter", set()),
    "editfeed_store_read_bytes_total": ("counter", {"store"}),
    "editfeed_store_retries_total": ("counter", set()),
    "editfeed_store_errors_total": ("counter", {"kind"}),
    "editfeed_store_cache_hits_total": ("counter", set()),
    "editfeed_store_cache_misses_total": ("counter", set()),
    "editfeed_store_cache_evictions_total": ("counter", set()),
    "editfeed_store_cache_errors_total": ("counter", {"kind"}),
    "editfeed_store_cache_bytes": ("gauge", set()),
    "editfeed_stream_batches_total": ("counter", {"training_job"}),
}

# Labels Prometheus' Kubernetes discovery and relabelling commonly attach to every series.
TARGET_LABELS = {"instance", "job", "pod", "namespace", "node", "container", "service", "endpoint"}


def metrics_from_source(root: Path) -> dict[str, tuple[str, set[str]]] | None:
    """Metric names from the `pub const X: &str = "editfeed_..."` of src/metrics.rs, with
    their type and label names from the `counter!/gauge!/histogram!(X, "label" => ...)`
    calls anywhere in src/ (type guessed from the name when never recorded)."""
    path = root / "src/metrics.rs"
    if not path.exists():
        return None
    consts = dict(re.findall(r'pub const (\w+): &str = "(editfeed_\w+)"', path.read_text()))
    if not consts:
        return None
    found: dict[str, tuple[str | None, set[str]]] = {n: (None, set()) for n in consts.values()}
    call = re.compile(r"(counter|gauge|histogram)!\(\s*(?:(?:crate|editfeed)::)?(?:metrics::)?(\w+)([^;]*)")
    for rs in sorted((root / "src").rglob("*.rs")):
        for kind, const, rest in call.findall(rs.read_text()):
            name = consts.get(const)
            if name:
                found[name] = (kind, found[name][1] | set(re.findall(r'"(\w+)"\s*=>', rest)))
    out: dict[str, tuple[str, set[str]]] = {}
    for name, (kind, labels) in found.items():
        kind = kind or ("counter" if name.endswith("_total") else "histogram" if name.endswith("_seconds") else "gauge")
        if "job" in labels:  # scraped, a `job` label becomes exported_job
            labels = labels | {"exported_job"}
        out[name] = (kind, labels)
    return out


GRPC_PORT = 50051
METRICS_PORT = 9090
RUN_AS_USER = 10001
CONFIG_PATH = "/etc/editfeed/editfeed.toml"


# --------------------------------------------------------------------------------------
# Reporting.


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.notes: list[str] = []

    def check(self, name: str, problems: Iterable[str]) -> bool:
        problems = list(problems)
        if problems:
            self.failed.append(name)
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
            return False
        self.passed += 1
        print(f"ok   {name}")
        return True

    def skip(self, name: str, why: str) -> None:
        self.notes.append(f"{name}: {why}")
        print(f"SKIP {name}: {why}")

    def run(self, name: str, fn: Callable[[], Iterable[str]]) -> bool:
        try:
            return self.check(name, fn())
        except Exception as e:  # a crash in a check is a failure, with its message
            return self.check(name, [f"{type(e).__name__}: {e}"])


# --------------------------------------------------------------------------------------
# editfeed.toml


def rust_struct_fields(root: Path, name: str) -> dict[str, str] | None:
    """`pub field: Type` of `pub struct NAME` somewhere in src/, as config kinds."""
    for rs in sorted((root / "src").rglob("*.rs")) if (root / "src").is_dir() else []:
        text = rs.read_text()
        m = re.search(r"pub struct " + name + r"\s*\{(.*?)\n\}", text, re.S)
        if not m:
            continue
        fields: dict[str, str] = {}
        pending_bytes = False
        for line in m.group(1).splitlines():
            line = line.strip()
            if line.startswith("#[serde(") and "deserialize_with" in line:
                pending_bytes = "bytes" in line or "size" in line
                continue
            f = re.match(r"pub (\w+):\s*(.+?),?$", line)
            if not f:
                continue
            ty = re.sub(r"^Option<(.*)>$", r"\1", f.group(2).strip())
            if pending_bytes:
                kind = "size"
            elif ty in ("String", "PathBuf", "&'static str"):
                kind = "str"
            elif ty == "bool":
                kind = "bool"
            elif re.fullmatch(r"[ui](8|16|32|64|128|size)", ty):
                kind = "int"
            elif ty.startswith(("BTreeMap", "HashMap")) or ty.endswith("Config"):
                kind = "table"
            else:
                kind = "any"
            fields[f.group(1)] = kind
            pending_bytes = False
        return fields
    return None


@functools.lru_cache(maxsize=None)
def config_schema(root: Path) -> tuple[dict[str, str], dict[str, str], str]:
    top, store = dict(CONFIG_TOP), dict(CONFIG_STORE)
    src_top = rust_struct_fields(root, "ServeConfig")
    src_store = rust_struct_fields(root, "StoreConfig")
    top.update(src_top or {})
    store.update(src_store or {})
    source = "src/ and the contract" if src_top else "the contract (no ServeConfig in src/)"
    return top, store, source


def check_value(where: str, kind: str, value: Any) -> list[str]:
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "size": (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMGT]i?B|B)?\s*", value) is not None),
        "table": isinstance(value, dict),
    }.get(kind, True)
    names = {"str": "a string", "bool": "a boolean", "int": "a non-negative integer",
             "size": "a byte size (integer or \"50GiB\")", "table": "a table"}
    return [] if ok else [f"{where} = {value!r}: expected {names.get(kind, kind)}"]


def check_config_text(text: str, root: Path = Path(".")) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return None, [f"not TOML: {e}"]
    top, store, _ = config_schema(root.resolve())
    out: list[str] = []
    for key, value in doc.items():
        if key not in top:
            out.append(f"unknown key {key!r} (the daemon refuses unknown keys)")
        else:
            out += check_value(key, top[key], value)
    for key in ("listen", "metrics_listen"):
        if isinstance(doc.get(key), str) and parse_port(doc[key]) is None:
            out.append(f"{key} = {doc[key]!r} is not HOST:PORT")
    if doc.get("log_format") not in (None, "json", "text"):
        out.append(f"log_format = {doc['log_format']!r}: expected \"json\" or \"text\"")
    for key, value in (doc.get("store") or {}).items() if isinstance(doc.get("store"), dict) else []:
        if key not in store:
            out.append(f"unknown key store.{key!r}")
        else:
            out += check_value(f"store.{key}", store[key], value)
        if key in CONFIG_SECRET_KEYS:
            out.append(f"store.{key}: credentials belong in a Secret (AWS_* variables), not in the config file")
    for name, url in (doc.get("datasets") or {}).items() if isinstance(doc.get("datasets"), dict) else []:
        if not DATASET_NAME.match(name):
            out.append(f"dataset name {name!r}: letters, digits, '-', '_', '.'; at most 64")
        if not isinstance(url, str) or not url.strip():
            out.append(f"dataset {name!r}: expected a non-empty path or URL")
    return doc, out


def parse_port(addr: str) -> int | None:
    m = re.fullmatch(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", addr.strip())
    if not m or not 0 < int(m.group(1)) < 65536:
        return None
    return int(m.group(1))


# --------------------------------------------------------------------------------------
# Kubernetes schemas.


def load_yaml_docs(text: str, origin: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise ValueError(f"{origin}: a document without kind/apiVersion")
    return docs


def kn(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


# Kinds that need a newer Kubernetes than the daemon: the pack Jobs use
# backoffLimitPerIndex (beta and on by default in 1.29). Older versions are not checked
# for them (main() says so).
MIN_VERSION: dict[str, tuple[int, int]] = {"Job": (1, 29)}


def version_tuple(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)


def validate_schemas(objs: list[dict[str, Any]], versions: list[str]) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    out: list[str] = []
    for obj in objs:
        if obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            out += check_podmonitor_shape(obj)
            continue
        for version in versions:
            if version_tuple(version) < MIN_VERSION.get(obj.get("kind"), (0, 0)):
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(root)"
                out.append(f"{kn(obj)} (Kubernetes {e.version}): {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                out.append(f"{kn(obj)}: {e.message}")
    return out


def check_podmonitor_shape(obj: dict[str, Any]) -> list[str]:
    """prometheus-operator's CRD schema is not shipped; check the fields that matter."""
    out = []
    if obj.get("apiVersion") != "monitoring.coreos.com/v1" or obj.get("kind") not in ("PodMonitor", "ServiceMonitor"):
        out.append(f"{kn(obj)}: expected monitoring.coreos.com/v1 PodMonitor")
    spec = obj.get("spec") or {}
    if not (spec.get("selector") or {}).get("matchLabels"):
        out.append(f"{kn(obj)}: spec.selector.matchLabels missing")
    eps = spec.get("podMetricsEndpoints") or []
    if not eps or any(not e.get("port") for e in eps):
        out.append(f"{kn(obj)}: podMetricsEndpoints need a named port")
    return out


# --------------------------------------------------------------------------------------
# Deployment policy, on any set of objects (raw manifests, kustomize or helm renders).


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") == kind]


def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def quantity(q: Any) -> float:
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    s = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "m": 1e-3}
    for u, f in units.items():
        if s.endswith(u):
            return float(s[: -len(u)]) * f
    return float(s)


def security_problems(pod: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """The restricted security context of the image's user, for one container of a pod
    (container settings override the pod's)."""
    out: list[str] = []
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}

    def eff(key: str) -> Any:
        return csc.get(key, psc.get(key))

    if eff("runAsNonRoot") is not True:
        out.append("runAsNonRoot must be true")
    if eff("runAsUser") != RUN_AS_USER:
        out.append(f"runAsUser must be {RUN_AS_USER} (the image's user)")
    if csc.get("readOnlyRootFilesystem") is not True:
        out.append("readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation must be false")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
        out.append("capabilities must drop ALL")
    if (csc.get("capabilities") or {}).get("add"):
        out.append("no capabilities may be added (the image needs none)")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        out.append("seccompProfile must be RuntimeDefault")
    return out


def writable_mount(pod: dict[str, Any], c: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The container's writable volume mount holding `path` (the deepest one), if any."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    best = None
    for m in c.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    if best is None or best.get("readOnly"):
        return None
    vol = volumes.get(best["name"], {})
    return best if ("emptyDir" in vol or "hostPath" in vol or "persistentVolumeClaim" in vol or "ephemeral" in vol) else None


def check_policy(objs: list[dict[str, Any]], root: Path, expect_gpu_scheduling: bool = True) -> tuple[list[str], dict[str, Any]]:
    """The deployment's rules; returns problems and a summary used for parity checks."""
    out: list[str] = []
    summary: dict[str, Any] = {}
    names = {(o["kind"], o["metadata"].get("name")) for o in objs}

    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    if len(namespaces) != 1 or None in namespaces:
        out.append(f"namespaced objects must share one explicit namespace, found {sorted(map(str, namespaces))}")
    for ns in by_kind(objs, "Namespace"):
        if ns["metadata"]["name"] not in namespaces:
            out.append(f"Namespace {ns['metadata']['name']} is not the objects' namespace")

    dss = by_kind(objs, "DaemonSet")
    if len(dss) != 1:
        return out + [f"expected exactly one DaemonSet, found {len(dss)}"], summary
    ds = dss[0]
    spec = ds["spec"]
    tpl = spec["template"]
    pod_labels = tpl["metadata"].get("labels") or {}
    pod = tpl["spec"]
    if not selects(spec["selector"].get("matchLabels"), pod_labels):
        out.append("DaemonSet selector does not match its pod template labels")

    # Scheduling on GPU nodes.
    if expect_gpu_scheduling:
        if (pod.get("nodeSelector") or {}).get("nvidia.com/gpu.present") != "true":
            out.append('nodeSelector must include nvidia.com/gpu.present: "true"')
        if not any(t.get("key") == "nvidia.com/gpu" and t.get("effect") in (None, "NoSchedule")
                   and t.get("operator", "Equal") in ("Exists", "Equal") for t in pod.get("tolerations") or []):
            out.append("no toleration for the nvidia.com/gpu NoSchedule taint")
    if pod.get("enableServiceLinks") is not False:
        out.append("enableServiceLinks must be false (service links inject EDITFEED_PORT, EDITFEED_SERVICE_HOST, ... beside the daemon's EDITFEED_<KEY> overrides)")
    if pod.get("automountServiceAccountToken") is not False:
        out.append("automountServiceAccountToken should be false (the daemon calls no Kubernetes API)")
    sa = pod.get("serviceAccountName", "default")
    if sa != "default" and ("ServiceAccount", sa) not in names:
        out.append(f"serviceAccountName {sa} is not among the objects")

    containers = {c["name"]: c for c in pod["containers"]}
    c = containers.get("editfeed")
    if c is None:
        return out + ["no container named editfeed"], summary
    if not c.get("image"):
        out.append("container editfeed has no image")
    args = c.get("args") or []
    if args[:1] != ["serve"] or "--config" not in args:
        out.append(f"args must run `serve --config FILE`, got {args}")
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else CONFIG_PATH

    ports = {p.get("name"): p for p in c.get("ports") or []}
    grpc = ports.get("grpc", {}).get("containerPort")
    metrics = ports.get("metrics", {}).get("containerPort")
    if grpc != GRPC_PORT:
        out.append(f"container port grpc must be {GRPC_PORT}, got {grpc}")
    if metrics != METRICS_PORT:
        out.append(f"container port metrics must be {METRICS_PORT}, got {metrics}")
    host_ports = [p for p in c.get("ports") or [] if p.get("hostPort")]
    if host_ports:
        surge = str(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("maxSurge", 0))
        if surge not in ("0", "0%"):
            out.append("a hostPort cannot be combined with updateStrategy maxSurge")

    # Probes: gRPC health on the Loader port.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(kind)
        if not probe or "grpc" not in probe:
            out.append(f"{kind} must be a gRPC probe")
        elif probe["grpc"].get("port") != grpc:
            out.append(f"{kind} port {probe['grpc'].get('port')} is not the grpc port {grpc}")
    readiness_service = ((c.get("readinessProbe") or {}).get("grpc") or {}).get("service")
    if readiness_service not in ("editfeed.v1.Loader", None, ""):
        out.append(f"readinessProbe service {readiness_service!r} is not one the daemon reports")

    # Resources.
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                out.append(f"resources.{part}.{r} missing")
    try:
        for r in ("cpu", "memory"):
            req, lim = (res.get("requests") or {}).get(r), (res.get("limits") or {}).get(r)
            if req is not None and lim is not None and quantity(req) > quantity(lim):
                out.append(f"resources: {r} request {req} exceeds its limit {lim}")
    except ValueError as e:
        out.append(f"resources: {e}")
    for e in c.get("env") or []:
        if e.get("name") == "EDITFEED_WORKERS":
            ref = (e.get("valueFrom") or {}).get("resourceFieldRef") or {}
            if ref and ref.get("resource") == "limits.cpu" and "cpu" not in (res.get("limits") or {}):
                out.append("EDITFEED_WORKERS follows limits.cpu but there is no CPU limit (it would be every core of the node)")
            if ref and ref.get("containerName", "editfeed") != "editfeed":
                out.append("EDITFEED_WORKERS resourceFieldRef names another container")

    # Security context: container settings override the pod's.
    psc = pod.get("securityContext") or {}
    out += security_problems(pod, c)
    for ic in pod.get("initContainers") or []:
        isc = ic.get("securityContext") or {}
        if isc.get("allowPrivilegeEscalation") is not False or "ALL" not in ((isc.get("capabilities") or {}).get("drop") or []):
            out.append(f"init container {ic['name']}: must drop ALL and forbid privilege escalation")
        if set((isc.get("capabilities") or {}).get("add") or []) - {"CHOWN"}:
            out.append(f"init container {ic['name']}: only CHOWN may be added")

    # A namespace that enforces the restricted Pod Security level admits no host ports or
    # hostPath volumes.
    restricted = [ns for ns in by_kind(objs, "Namespace")
                  if (ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") in ("restricted", "baseline")]
    if restricted:
        if any("hostPath" in v for v in pod.get("volumes") or []):
            out.append("a hostPath volume in a namespace that enforces restricted/baseline Pod Security")
        if any(p.get("hostPort") for ctr in pod["containers"] + (pod.get("initContainers") or []) for p in ctr.get("ports") or []):
            out.append("a hostPort in a namespace that enforces restricted/baseline Pod Security")
        for ic in pod.get("initContainers") or []:
            isc = ic.get("securityContext") or {}
            if isc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True or isc.get("runAsUser") == 0:
                out.append(f"init container {ic['name']} runs as root in a namespace that enforces restricted Pod Security")

    # Secret for AWS credentials: optional.
    for ef in c.get("envFrom") or []:
        if "secretRef" in ef and ef["secretRef"].get("optional") is not True:
            out.append(f"envFrom secret {ef['secretRef'].get('name')} must be optional: true")

    # Volumes: the config file, a writable cache_dir and /tmp.
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = c.get("volumeMounts") or []
    config_doc = None
    config_mount = next((m for m in mounts if config_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
    if config_mount is None:
        out.append(f"nothing is mounted at {config_path}")
    else:
        vol = volumes.get(config_mount["name"], {})
        cm_name = (vol.get("configMap") or {}).get("name")
        key = config_path[len(config_mount["mountPath"].rstrip("/")) + 1:]
        cms = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == cm_name]
        if not cms:
            out.append(f"the config volume's ConfigMap {cm_name} is not among the objects")
        elif key not in (cms[0].get("data") or {}):
            out.append(f"ConfigMap {cm_name} has no key {key}")
        else:
            config_doc, problems = check_config_text(cms[0]["data"][key], root)
            out += [f"ConfigMap {cm_name} {key}: {p}" for p in problems]
            summary["config"] = config_doc

    if writable_mount(pod, c, "/tmp") is None:
        out.append("/tmp is not a writable volume (the root filesystem is read-only)")
    if config_doc is not None:
        cache_dir = (config_doc.get("store") or {}).get("cache_dir")
        if cache_dir and writable_mount(pod, c, cache_dir) is None:
            out.append(f"store.cache_dir {cache_dir} is not on a writable volume")
        listen = config_doc.get("listen", "127.0.0.1:50051")
        if parse_port(listen) != grpc:
            out.append(f"config listen {listen!r} does not use the grpc container port {grpc}")
        if listen.startswith("127.") or listen.startswith("[::1]") or listen.startswith("localhost"):
            out.append(f"config listen {listen!r} is loopback: probes and Services cannot reach it")
        ml = config_doc.get("metrics_listen")
        if ml is None or parse_port(ml) != metrics:
            out.append(f"config metrics_listen {ml!r} does not use the metrics container port {metrics}")
        drain = config_doc.get("drain_seconds", DEFAULT_DRAIN_SECONDS)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if not grace > drain:
            out.append(f"terminationGracePeriodSeconds {grace} must exceed drain_seconds {drain}")
        summary["drain"] = drain

    # Prometheus scrape annotations, unless a PodMonitor scrapes instead.
    ann = tpl["metadata"].get("annotations") or {}
    if by_kind(objs, "PodMonitor"):
        for pm in by_kind(objs, "PodMonitor"):
            if not selects(pm["spec"]["selector"].get("matchLabels"), pod_labels):
                out.append(f"PodMonitor {pm['metadata']['name']} does not select the daemon's pods")
            for ep in pm["spec"].get("podMetricsEndpoints") or []:
                if ep.get("port") not in ports:
                    out.append(f"PodMonitor port {ep.get('port')!r} is not a container port name")
    if ann.get("prometheus.io/scrape") is not None or not by_kind(objs, "PodMonitor"):
        if ann.get("prometheus.io/scrape") != "true":
            out.append('pod annotation prometheus.io/scrape must be "true"')
        if ann.get("prometheus.io/port") != str(metrics):
            out.append(f"pod annotation prometheus.io/port {ann.get('prometheus.io/port')!r} is not the metrics port {metrics}")
        if ann.get("prometheus.io/path") != "/metrics":
            out.append("pod annotation prometheus.io/path must be /metrics")

    # Services.
    services = by_kind(objs, "Service")
    local = [s for s in services if s["spec"].get("clusterIP") != "None"]
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    if len(local) != 1:
        out.append(f"expected one node-local ClusterIP Service, found {len(local)}")
    for s in services:
        sname = s["metadata"]["name"]
        if len(sname) > 63 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", sname):
            out.append(f"Service name {sname!r} is not a DNS-1035 label")
        if not selects(s["spec"].get("selector"), pod_labels):
            out.append(f"Service {sname} does not select the daemon's pods")
        sp = {p.get("name"): p for p in s["spec"].get("ports") or []}
        if "grpc" not in sp or sp["grpc"].get("port") != GRPC_PORT:
            out.append(f"Service {sname} needs port {GRPC_PORT} named grpc")
        else:
            tp = sp["grpc"].get("targetPort", sp["grpc"]["port"])
            if tp not in ("grpc", grpc):
                out.append(f"Service {sname} targetPort {tp!r} is not the grpc container port")
    for s in local:
        if s["spec"].get("type", "ClusterIP") != "ClusterIP":
            out.append(f"Service {s['metadata']['name']} must be ClusterIP")
        if s["spec"].get("internalTrafficPolicy") != "Local":
            out.append(f"Service {s['metadata']['name']} must have internalTrafficPolicy: Local")
    for s in headless:
        if s["spec"].get("publishNotReadyAddresses"):
            out.append(f"headless Service {s['metadata']['name']} must list only ready daemons")
    if not headless:
        out.append("no headless Service listing every daemon (the failover endpoint)")

    for o in objs:
        n = o["metadata"].get("name", "")
        if len(n) > 63 and o["kind"] in ("Service", "DaemonSet", "ConfigMap", "ServiceAccount", "PodMonitor"):
            out.append(f"{kn(o)}: name longer than 63 characters")

    summary.update({
        # The chart leaves the namespace to `helm install --create-namespace`.
        "kinds": sorted(o["kind"] for o in objs if o["kind"] != "Namespace"),
        "selector": spec["selector"].get("matchLabels"),
        "updateStrategy": spec.get("updateStrategy"),
        "pod": {k: pod.get(k) for k in ("nodeSelector", "tolerations", "terminationGracePeriodSeconds",
                                        "securityContext", "enableServiceLinks", "automountServiceAccountToken")},
        "container": {k: c.get(k) for k in ("args", "ports", "env", "envFrom", "resources", "startupProbe",
                                            "readinessProbe", "livenessProbe", "securityContext", "volumeMounts")},
        "volumes": pod.get("volumes"),
        "services": sorted((s["metadata"]["name"], s["spec"].get("clusterIP") == "None",
                            s["spec"].get("internalTrafficPolicy"), json.dumps(s["spec"].get("ports"), sort_keys=True))
                           for s in services),
    })
    return out, summary


def diff_summaries(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_summaries(va, vb, f"{prefix}{k}.")
        elif normalize(va) != normalize(vb):
            out.append(f"{prefix}{k}: kustomize {json.dumps(va, sort_keys=True)} != helm {json.dumps(vb, sort_keys=True)}")
    return out


def normalize(v: Any) -> Any:
    if isinstance(v, list):
        return sorted((normalize(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------------------------------
# The pack Jobs (deploy/kubernetes/pack/, the chart's `pack:` values): an Indexed Job whose
# pod k runs `editfeed pack pico-banana --part k/N --resume` into DATASET/parts/k, and a
# Job running `editfeed manifest merge` over the N part folders.

JOB_INDEX_REF = "$(JOB_COMPLETION_INDEX)"
JOB_INDEX_FIELDS = {
    "metadata.annotations['batch.kubernetes.io/job-completion-index']",
    "metadata.labels['batch.kubernetes.io/job-completion-index']",
}
# Environment variables that hold credentials: they come from a Secret, never a literal
# value or a ConfigMap.
CREDENTIAL_ENV = re.compile(r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY|ACCOUNT_KEY|SAS_KEY|CREDENTIALS?)(_|$)", re.I)
# --threads per requested core beyond which a pack pod is undersized (threads above the
# cores only help while they wait on a remote store).
PACK_THREADS_PER_CORE = 4


def flag_value(args: list[str], name: str) -> str | None:
    """The value after `name` (or of `name=VALUE`)."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def merge_operands(args: list[str]) -> tuple[list[str], str | None]:
    """The part folders and --out of `manifest merge PARTS... --out DATASET [--overwrite]`."""
    parts, out, i = [], None, 2
    while i < len(args):
        a = args[i]
        if a == "--out" and i + 1 < len(args):
            out, i = args[i + 1], i + 2
            continue
        if a.startswith("--out="):
            out = a[len("--out="):]
        elif not a.startswith("-"):
            parts.append(a)
        i += 1
    return parts, out


def inside(path: str, folder: str) -> bool:
    """`path` is strictly inside `folder` (local paths or object-store URLs)."""
    def norm(x: str) -> str:
        scheme, sep, rest = x.partition("://")
        if not sep:
            scheme, rest = "", x
        rest = re.sub(r"/+", "/", rest).rstrip("/")
        return f"{scheme}{sep}{os.path.normpath(rest) if rest.startswith('/') else rest}"
    p, f = norm(path), norm(folder)
    return p.startswith(f + "/") and ".." not in p[len(f):].split("/")


def job_container(job: dict[str, Any]) -> dict[str, Any] | None:
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c for c in containers if c.get("name") == "editfeed"), containers[0] if containers else None)


def job_role(job: dict[str, Any]) -> str | None:
    args = (job_container(job) or {}).get("args") or []
    if args[:2] == ["pack", "pico-banana"]:
        return "pack"
    if args[:2] == ["manifest", "merge"]:
        return "merge"
    return None


# A policy check: problems, and a summary of what the objects deploy.
Policy = Callable[[list[dict[str, Any]]], tuple[list[str], Any]]


def check_pack(objs: list[dict[str, Any]], context: list[dict[str, Any]],
               require_merge: bool = True) -> tuple[list[str], dict[str, Any]]:
    """The pack Jobs among `objs`; `context` holds the daemon's objects (its DaemonSet,
    Services, ServiceAccount, Namespace), which may be the same list. Returns problems and
    a summary used for the chart/kustomize parity check."""
    out: list[str] = []
    everything = context + [o for o in objs if not any(o is c for c in context)]
    jobs = by_kind(objs, "Job")
    packs = [j for j in jobs if job_role(j) == "pack"]
    merges = [j for j in jobs if job_role(j) == "merge"]
    for j in jobs:
        if job_role(j) is None:
            out.append(f"{kn(j)} runs neither `editfeed pack pico-banana` nor `editfeed manifest merge`")
    if len(packs) != 1:
        return out + [f"expected one pack Job (`editfeed pack pico-banana --part $(JOB_COMPLETION_INDEX)/N`), found {len(packs)}"], {}
    if len(merges) > 1 or (require_merge and not merges):
        out.append(f"expected one merge Job (`editfeed manifest merge`), found {len(merges)}")

    daemons = by_kind(everything, "DaemonSet")
    daemon = daemons[0] if len(daemons) == 1 else None
    daemon_pod = ((daemon or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    daemon_c = next((c for c in daemon_pod.get("containers") or [] if c.get("name") == "editfeed"), {})
    daemon_secrets = [ef["secretRef"].get("name") for ef in daemon_c.get("envFrom") or [] if "secretRef" in ef]
    daemon_ns = ((daemon or {}).get("metadata") or {}).get("namespace")
    services = by_kind(everything, "Service")
    monitors = by_kind(everything, "PodMonitor")
    names = {(o["kind"], o["metadata"].get("name")) for o in everything}
    restricted = any((ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") in ("restricted", "baseline")
                     for ns in by_kind(everything, "Namespace"))
    summary: dict[str, Any] = {}

    for job in packs + merges:
        role = job_role(job)
        where = kn(job)
        spec = job.get("spec") or {}
        tpl = spec.get("template") or {}
        pod = tpl.get("spec") or {}
        labels = (tpl.get("metadata") or {}).get("labels") or {}
        c = job_container(job) or {}
        args = [str(a) for a in c.get("args") or []]
        if c.get("command") and os.path.basename(str(c["command"][0])) != "editfeed":
            out.append(f"{where}: command {c['command']} is not the editfeed binary (the image's entrypoint)")
        if not c.get("image"):
            out.append(f"{where}: no image")
        if daemon_ns and job["metadata"].get("namespace") != daemon_ns:
            out.append(f"{where}: namespace {job['metadata'].get('namespace')} is not the daemon's ({daemon_ns}), where its Secret and ServiceAccount are")

        # Pods: never the Services' endpoints, the restricted security context.
        for svc in services:
            if selects(svc["spec"].get("selector"), labels):
                out.append(f"Service {svc['metadata']['name']} selects the pods of {where}: they would become its endpoints")
        for pm in monitors:
            if selects(((pm.get("spec") or {}).get("selector") or {}).get("matchLabels"), labels):
                out.append(f"PodMonitor {pm['metadata']['name']} selects the pods of {where}")
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            out.append(f"{where}: restartPolicy must be Never or OnFailure")
        if (spec.get("backoffLimitPerIndex") is not None or spec.get("podFailurePolicy")) and pod.get("restartPolicy") != "Never":
            out.append(f"{where}: backoffLimitPerIndex and podFailurePolicy need restartPolicy Never")
        out += [f"{where}: {p}" for p in security_problems(pod, c)]
        if writable_mount(pod, c, "/tmp") is None:
            out.append(f"{where}: /tmp is not a writable volume (the root filesystem is read-only)")
        if pod.get("automountServiceAccountToken") is not False:
            out.append(f"{where}: automountServiceAccountToken should be false (editfeed calls no Kubernetes API)")
        if pod.get("enableServiceLinks") is not False:
            out.append(f"{where}: enableServiceLinks must be false (service links inject EDITFEED_* variables)")
        sa = pod.get("serviceAccountName", "default")
        if sa != "default" and ("ServiceAccount", sa) not in names:
            out.append(f"{where}: serviceAccountName {sa} is neither among the objects nor the daemon's")
        if restricted:
            if any("hostPath" in v for v in pod.get("volumes") or []):
                out.append(f"{where}: a hostPath volume in a namespace that enforces restricted/baseline Pod Security")
        res = c.get("resources") or {}
        for part, r in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if r not in (res.get(part) or {}):
                out.append(f"{where}: resources.{part}.{r} missing")
        try:
            for r in ("cpu", "memory"):
                req, lim = (res.get("requests") or {}).get(r), (res.get("limits") or {}).get(r)
                if req is not None and lim is not None and quantity(req) > quantity(lim):
                    out.append(f"{where}: resources: {r} request {req} exceeds its limit {lim}")
        except ValueError as e:
            out.append(f"{where}: resources: {e}")

        # Credentials: the daemon's Secret, never a ConfigMap or a literal.
        secret_refs = [ef["secretRef"].get("name") for ef in c.get("envFrom") or [] if "secretRef" in ef]
        cm_refs = [ef["configMapRef"].get("name") for ef in c.get("envFrom") or [] if "configMapRef" in ef]
        for s in daemon_secrets:
            if s not in secret_refs:
                out.append(f"{where}: object-store credentials must come from the Secret {s} (envFrom secretRef), as the DaemonSet's do")
            if s in cm_refs:
                out.append(f"{where}: envFrom configMapRef {s}: credentials belong in a Secret, not a ConfigMap")
        for ef in c.get("envFrom") or []:
            if "secretRef" in ef and ef["secretRef"].get("optional") is not True and ef["secretRef"].get("name") in daemon_secrets:
                out.append(f"{where}: envFrom secret {ef['secretRef'].get('name')} must be optional: true, like the daemon's")
        for e in c.get("env") or []:
            n = e.get("name", "")
            if CREDENTIAL_ENV.search(n) and not n.endswith("_FILE") and "secretKeyRef" not in (e.get("valueFrom") or {}):
                out.append(f"{where}: env {n} looks like a credential: take it from a Secret (valueFrom.secretKeyRef)")
        for cm in by_kind(everything, "ConfigMap"):
            if cm["metadata"]["name"] in cm_refs:
                for k in cm.get("data") or {}:
                    if CREDENTIAL_ENV.search(k):
                        out.append(f"{where}: ConfigMap {cm['metadata']['name']} holds {k}: credentials belong in a Secret")

        summary[role] = {
            "spec": {k: v for k, v in spec.items() if k not in ("template", "selector")},
            "pod": {k: pod.get(k) for k in ("restartPolicy", "securityContext", "enableServiceLinks",
                                            "automountServiceAccountToken", "serviceAccountName", "volumes")},
            "container": {k: c.get(k) for k in ("env", "envFrom", "resources", "securityContext", "volumeMounts")},
            # In order: flags and their values pair up.
            "args": " ".join(args),
        }

    # The pack: an Indexed Job of N completions, pod k packing part k/N into a folder of
    # its own, resumable.
    pack = packs[0]
    spec = pack.get("spec") or {}
    c = job_container(pack) or {}
    args = [str(a) for a in c.get("args") or []]
    where = kn(pack)
    if spec.get("completionMode") != "Indexed":
        out.append(f"{where}: completionMode must be Indexed (each pod packs the part of its completion index)")
    part = flag_value(args, "--part")
    m = re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", part or "")
    n = int(m.group(1)) if m else None
    if m is None:
        out.append(f"{where}: --part must be {JOB_INDEX_REF}/N (the part index from the Indexed Job's JOB_COMPLETION_INDEX), got {part!r}")
    completions = spec.get("completions")
    if n is not None and completions != n:
        out.append(f"{where}: completions {completions} is not the N of --part .../{n}")
    parallelism = spec.get("parallelism", 1)
    if not isinstance(parallelism, int) or parallelism < 1 or (isinstance(completions, int) and parallelism > completions):
        out.append(f"{where}: parallelism {parallelism} must be between 1 and completions ({completions})")
    if spec.get("backoffLimitPerIndex") is None and spec.get("backoffLimit", 6) < 1:
        out.append(f"{where}: no retries (set backoffLimitPerIndex or backoffLimit): a killed pod's part would never finish")
    if spec.get("backoffLimitPerIndex") is not None and spec["backoffLimitPerIndex"] < 1:
        out.append(f"{where}: backoffLimitPerIndex must be at least 1 (a retry resumes the part)")
    if "--resume" not in args:
        out.append(f"{where}: --resume missing: a retried pod would fail on (or redo) the shards its part already wrote")
    for e in c.get("env") or []:
        if e.get("name") == "JOB_COMPLETION_INDEX":
            field = (((e.get("valueFrom") or {}).get("fieldRef")) or {}).get("fieldPath")
            if field not in JOB_INDEX_FIELDS:
                out.append(f"{where}: env JOB_COMPLETION_INDEX must be the fieldRef {sorted(JOB_INDEX_FIELDS)[0]}, got {e}")
    if not flag_value(args, "--root"):
        out.append(f"{where}: --root missing")
    if (flag_value(args, "--source-map") is None) != (flag_value(args, "--source-images") is None):
        out.append(f"{where}: --source-map and --source-images go together")
    threads = flag_value(args, "--threads")
    if threads is None or not threads.isdigit() or int(threads) < 1:
        out.append(f"{where}: --threads T (T >= 1) missing: the pack would size its pool from the node, not from its CPU request")
    else:
        # One thread per requested core, or more (up to PACK_THREADS_PER_CORE) to keep
        # reads in flight against a high-latency store: each thread reads one sample at
        # a time.
        req = ((c.get("resources") or {}).get("requests") or {}).get("cpu")
        try:
            if req is not None and quantity(req) > int(threads):
                out.append(f"{where}: resources.requests.cpu {req} exceeds --threads {threads}: cores the pack cannot use")
            if req is not None and int(threads) > PACK_THREADS_PER_CORE * quantity(req):
                out.append(f"{where}: --threads {threads} is more than {PACK_THREADS_PER_CORE} per requested core "
                           f"(resources.requests.cpu {req}): raise the request")
        except ValueError as e:
            out.append(f"{where}: resources: {e}")
    part_out = flag_value(args, "--out") or ""
    if not part_out.rstrip("/").endswith("/" + JOB_INDEX_REF) or part_out.count(JOB_INDEX_REF) != 1:
        out.append(f"{where}: --out {part_out!r} must end in a folder named {JOB_INDEX_REF}, one per part")
    name = pack["metadata"].get("name", "")
    if isinstance(completions, int) and len(f"{name}-{completions - 1}") > 63:
        out.append(f"{where}: the pods' hostname {name}-{completions - 1} is longer than 63 characters")
    dirs = [part_out.replace(JOB_INDEX_REF, str(k)).rstrip("/") for k in range(n or 0)]

    # The merge: every part folder once, each inside the dataset.
    for merge in merges:
        mwhere = kn(merge)
        mspec = merge.get("spec") or {}
        mc = job_container(merge) or {}
        if mc.get("image") != c.get("image"):
            out.append(f"{mwhere}: image {mc.get('image')} is not the pack's {c.get('image')}")
        if mspec.get("completionMode") == "Indexed" or mspec.get("completions", 1) != 1 or mspec.get("parallelism", 1) != 1:
            out.append(f"{mwhere}: one pod, one completion (the merge runs once)")
        if mspec.get("backoffLimit", 6) < 1:
            out.append(f"{mwhere}: backoffLimit must be at least 1 (the merge fails, and is retried, while a part is unfinished)")
        parts, dataset = merge_operands([str(a) for a in mc.get("args") or []])
        if not dataset:
            out.append(f"{mwhere}: --out DATASET missing")
            continue
        listed = [p.rstrip("/") for p in parts]
        for p in sorted({p for p in listed if listed.count(p) > 1}):
            out.append(f"{mwhere}: names the part folder {p} more than once")
        for k, d in enumerate(dirs):
            if d not in listed:
                out.append(f"{mwhere}: does not name part {k} ({d}), which the pack writes")
        for p in listed:
            if dirs and p not in dirs:
                out.append(f"{mwhere}: names {p}, which no pack pod writes")
        for k, d in enumerate(dirs):
            if not inside(d, dataset):
                out.append(f"part {k}'s folder {d} is not inside the merge's --out {dataset}")
                break
    return out, summary


# --------------------------------------------------------------------------------------
# Dockerfile and its build context.


def dockerignore_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """Docker's .dockerignore rules: last matching pattern wins, `!` re-includes, `**`
    spans directories, a pattern that matches a directory excludes what is under it."""
    rules = []
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        rx = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                rx += ".*"
                i += 2
            elif line[i] == "*":
                rx += "[^/]*"
                i += 1
            elif line[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(line[i])
                i += 1
        rules.append((re.compile(rx + "(?:/.*)?$"), negate))

    def excluded(path: str) -> bool:
        result = False
        for rx, negate in rules:
            if rx.match(path):
                result = not negate
        return result

    return excluded


def check_dockerfile(root: Path) -> list[str]:
    import dockerfile as df

    out: list[str] = []
    path = root / "deploy/Dockerfile"
    try:
        cmds = df.parse_file(str(path))
    except df.GoParseError as e:
        return [f"BuildKit parser: {e}"]
    stages: list[list[Any]] = []
    for c in cmds:
        if c.cmd.upper() == "FROM":
            stages.append([c])
        elif stages:
            stages[-1].append(c)
        elif c.cmd.upper() != "ARG":
            out.append(f"line {c.start_line}: {c.cmd} before the first FROM")
    if len(stages) < 2:
        return out + ["not a multi-stage build"]
    first = " ".join(stages[0][0].value)
    if not re.match(r"rust:[^ ]*", first):
        out.append(f"the first stage should build from rust:*, got {first!r}")
    runs = " ".join(" ".join(c.value) for st in stages for c in st if c.cmd.upper() == "RUN")
    if not re.search(r"cargo build --release --locked --bin editfeed", runs):
        out.append("no `cargo build --release --locked --bin editfeed`")
    final = stages[-1]
    base = final[0].value[0]
    if not re.match(r"(debian:[^ ]*slim|gcr\.io/distroless/cc)", base.replace("${DEBIAN_RELEASE}", "bookworm")):
        out.append(f"runtime base {base!r} is neither debian:*-slim nor distroless/cc")

    def last(cmd: str) -> Any:
        found = [c for c in final if c.cmd.upper() == cmd]
        return found[-1] if found else None

    user = last("USER")
    if user is None or user.value[0].split(":")[0] != str(RUN_AS_USER):
        out.append(f"the runtime stage must end as USER {RUN_AS_USER} (numeric, for runAsNonRoot)")
    exposed = {p.split("/")[0] for c in final if c.cmd.upper() == "EXPOSE" for p in c.value}
    for p in (GRPC_PORT, METRICS_PORT):
        if str(p) not in exposed:
            out.append(f"port {p} not EXPOSEd")
    ep, cmd = last("ENTRYPOINT"), last("CMD")
    if ep is None or not ep.json or list(ep.value) != ["editfeed"]:
        out.append('ENTRYPOINT must be ["editfeed"] (exec form)')
    if cmd is None or not cmd.json or list(cmd.value) != ["serve", "--config", CONFIG_PATH]:
        out.append(f'CMD must be ["serve", "--config", "{CONFIG_PATH}"] (exec form)')
    if "ca-certificates" not in " ".join(" ".join(c.value) for c in final if c.cmd.upper() == "RUN") and "distroless" not in base:
        out.append("the runtime stage does not install ca-certificates")

    # The build context after the dockerignore.
    ignore = root / "deploy/Dockerfile.dockerignore"
    if not ignore.exists():
        return out + ["deploy/Dockerfile.dockerignore missing"]
    excluded = dockerignore_matcher(ignore.read_text().splitlines())
    cargo = tomllib.loads((root / "Cargo.toml").read_text())
    needed = ["Cargo.toml", "Cargo.lock", "build.rs", "src/main.rs", "src/lib.rs", "deploy/editfeed.toml"]
    needed += [t["path"] for key in ("lib", "bin") for t in (cargo.get(key) if isinstance(cargo.get(key), list) else [cargo.get(key) or {}]) if t.get("path")]
    for kind, folder in (("bench", "benches"), ("test", "tests"), ("example", "examples")):
        for t in cargo.get(kind, []):
            needed.append(t.get("path") or f"{folder}/{t['name']}.rs")
    needed += [str(p.relative_to(root)) for p in (root / "proto").rglob("*.proto")]
    for rel in sorted(set(needed)):
        if not (root / rel).exists():
            if rel != "build.rs" or "build" in (cargo.get("package") or {}):
                out.append(f"{rel} is named by the build but does not exist")
        elif excluded(rel):
            out.append(f"{rel} is needed by the build but excluded by the dockerignore")
    for rel in ("target/release/editfeed", ".git/HEAD", ".venv/bin/python", "demo-data/manifest.json"):
        if not excluded(rel):
            out.append(f"{rel} would be sent to the builder (add it to the dockerignore)")
    # Every COPY from the context names something that exists and is not ignored.
    for st in stages:
        for c in st:
            if c.cmd.upper() == "COPY" and not any(f.startswith("--from") for f in c.flags):
                for src in c.value[:-1]:
                    if src in (".", "./"):
                        continue
                    if not (root / src).exists():
                        out.append(f"line {c.start_line}: COPY {src}: no such file in the context")
                    elif excluded(src.rstrip("/")):
                        out.append(f"line {c.start_line}: COPY {src}: excluded by the dockerignore")
    return out


# --------------------------------------------------------------------------------------
# Grafana.


GRAFANA_VARS = {
    "$__rate_interval": "5m", "${__rate_interval}": "5m", "$__interval": "1m", "${__interval}": "1m",
    "$__range": "1h", "${__range}": "1h",
}


def check_grafana(path: Path, metrics: dict[str, tuple[str, set[str]]]) -> list[str]:
    import promql_parser

    out: list[str] = []
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    inputs = [i for i in dash.get("__inputs", []) if i.get("name") == "DS_PROMETHEUS"]
    if not inputs or inputs[0].get("pluginId") != "prometheus" or inputs[0].get("type") != "datasource":
        out.append("no __inputs entry DS_PROMETHEUS of type datasource/prometheus")
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            out.append(f"missing {key}")

    panels: list[dict[str, Any]] = []

    def collect(ps: list[dict[str, Any]]) -> None:
        for p in ps:
            panels.append(p)
            collect(p.get("panels") or [])

    collect(dash.get("panels") or [])
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        out.append("panel ids must be present and unique")
    used: set[str] = set()
    queries: list[tuple[str, str]] = []
    for p in panels:
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if "gridPos" not in p:
            out.append(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        ds = p.get("datasource") or {}
        if ds.get("uid") != "${DS_PROMETHEUS}":
            out.append(f"{where}: datasource uid must be ${{DS_PROMETHEUS}}")
        targets = p.get("targets") or []
        if not targets:
            out.append(f"{where}: no queries")
        for t in targets:
            if (t.get("datasource") or ds).get("uid") != "${DS_PROMETHEUS}":
                out.append(f"{where} {t.get('refId')}: datasource uid must be ${{DS_PROMETHEUS}}")
            if not t.get("expr"):
                out.append(f"{where} {t.get('refId')}: empty expr")
            else:
                queries.append((f"{where} {t.get('refId')}", t["expr"]))
    for v in (dash.get("templating") or {}).get("list") or []:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q or "")
        if v.get("type") == "query":
            if not m:
                out.append(f"variable {v.get('name')}: expected label_values(selector, label)")
            else:
                queries.append((f"variable {v.get('name')}", m.group(1)))

    for where, expr in queries:
        text = expr
        for k, val in GRAFANA_VARS.items():
            text = text.replace(k, val)
        try:
            ast = promql_parser.parse(text)
        except Exception as e:
            out.append(f"{where}: PromQL does not parse: {e}: {expr}")
            continue
        selectors: list[Any] = []
        grouping: list[str] = []

        def visit(node: Any) -> bool:
            if isinstance(node, promql_parser.VectorSelector):
                selectors.append(node)
            elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                grouping.extend(node.modifier.labels or [])
            return True

        promql_parser.walk(ast, visit)
        if not selectors:
            out.append(f"{where}: selects no metric")
        labels_ok = set(TARGET_LABELS)
        for s in selectors:
            name = s.name or next((m.value for m in s.matchers.matchers if m.name == "__name__"), None)
            base, kind = metric_base(name, metrics)
            if base is None:
                out.append(f"{where}: {name!r} is not an editfeed metric")
                continue
            used.add(base)
            labels = metrics[base][1] | TARGET_LABELS | ({"le"} if kind == "bucket" else set())
            labels_ok |= labels
            for m in s.matchers.matchers:
                if m.name != "__name__" and m.name not in labels:
                    out.append(f"{where}: {name} has no label {m.name!r}")
        for label in grouping:
            if label not in labels_ok:
                out.append(f"{where}: groups by {label!r}, a label none of its metrics has")
    for name in sorted(set(metrics) - used):
        out.append(f"metric {name} is on no panel")
    return out


def metric_base(name: str | None, metrics: dict[str, tuple[str, set[str]]]) -> tuple[str | None, str | None]:
    if name in metrics:
        return (name, None) if metrics[name][0] != "histogram" else (None, None)
    for suffix in ("bucket", "sum", "count"):
        if name and name.endswith("_" + suffix):
            base = name[: -len(suffix) - 1]
            if base in metrics and metrics[base][0] == "histogram":
                return base, suffix
    return None, None


# --------------------------------------------------------------------------------------
# Helm.


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def helm_template(helm: str, chart: Path, args: list[str]) -> tuple[list[dict[str, Any]] | None, str]:
    p = run([helm, "template", "editfeed", str(chart), "--namespace", "editfeed", *args])
    if p.returncode != 0:
        return None, (p.stderr or p.stdout).strip()
    return load_yaml_docs(p.stdout, "helm template"), ""


def helm_notes(helm: str, chart: Path, args: list[str]) -> tuple[str | None, str]:
    """NOTES.txt as `helm install` would print it (helm template skips it): rendered
    from a copy of the chart in which it is wrapped as a YAML string."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="editfeed-notes-") as tmp:
        copy_ = Path(tmp) / chart.name
        shutil.copytree(chart, copy_)
        notes = (copy_ / "templates/NOTES.txt").read_text()
        (copy_ / "templates/NOTES.txt").unlink()
        wrapped = "notes: |\n" + "".join("  " + line + "\n" for line in notes.splitlines())
        (copy_ / "templates/zz-notes.yaml").write_text(wrapped)
        p = run([helm, "template", "editfeed", str(copy_), "--namespace", "editfeed",
                 "--show-only", "templates/zz-notes.yaml", *args])
        if p.returncode != 0:
            return None, (p.stderr or p.stdout).strip()
        return yaml.safe_load(p.stdout)["notes"], ""


def check_chart_static(chart: Path) -> list[str]:
    import jsonschema

    out: list[str] = []
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    for key in ("apiVersion", "name", "version", "appVersion"):
        if not meta.get(key):
            out.append(f"Chart.yaml: {key} missing")
    if meta.get("apiVersion") != "v2":
        out.append("Chart.yaml: apiVersion must be v2")
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?", str(meta.get("version", ""))):
        out.append(f"Chart.yaml: version {meta.get('version')!r} is not SemVer 2")
    values = yaml.safe_load((chart / "values.yaml").read_text())
    schema = json.loads((chart / "values.schema.json").read_text())
    for e in jsonschema.Draft7Validator(schema).iter_errors(values):
        out.append(f"values.yaml: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
    for f in sorted((chart / "ci").glob("*-values.yaml")):
        merged = deep_merge(copy.deepcopy(values), yaml.safe_load(f.read_text()) or {})
        for e in jsonschema.Draft7Validator(schema).iter_errors(merged):
            out.append(f"{f.name}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
    for t in ("_helpers.tpl", "NOTES.txt", "daemonset.yaml", "configmap.yaml", "service.yaml",
              "service-peers.yaml", "serviceaccount.yaml", "pack-job.yaml", "pack-merge-job.yaml"):
        if not (chart / "templates" / t).exists():
            out.append(f"templates/{t} missing")
    for t in (chart / "templates").glob("*"):
        text = t.read_text()
        if text.count("{{") != text.count("}}"):
            out.append(f"templates/{t.name}: unbalanced {{{{ }}}}")
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


# --------------------------------------------------------------------------------------
# Self-test: the validator must catch known breakages.

# (file, text, replacement, what the output must then say)
MUTATIONS = [
    ("deploy/kubernetes/daemonset.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystm: true",
     "'readOnlyRootFilesystm' was unexpected"),
    ("deploy/kubernetes/daemonset.yaml", "containerPort: 9090", 'containerPort: "9090"', "is not of type 'integer'"),
    ("deploy/kubernetes/service.yaml", "internalTrafficPolicy: Local", "internalTrafficPolicy: Cluster",
     "must have internalTrafficPolicy: Local"),
    ("deploy/kubernetes/configmap.yaml", "drain_seconds = 30", "drain_seconds = 90", "must exceed drain_seconds 90"),
    ("deploy/kubernetes/configmap.yaml", "max_streams = 64", "max_stream = 64", "unknown key 'max_stream'"),
    ("deploy/kubernetes/configmap.yaml", "    cache_bytes = ", "    cache_byte = ", "unknown key store.'cache_byte'"),
    ("deploy/kubernetes/configmap.yaml", "    allow_http = false\n", "    allow_http = false\n    secret_access_key = \"x\"\n",
     "credentials belong in a Secret"),
    ("deploy/kubernetes/kustomization.yaml", "  - service-peers.yaml\n", "", "service-peers.yaml is not listed"),
    ("deploy/helm/editfeed/values.yaml", "internalTrafficPolicy: Local", "internalTrafficPolicy: Nodal", "Nodal"),
    ("deploy/kubernetes/daemonset.yaml", "containerPort: 50051\n", "containerPort: 50051\n              hostPort: 50051\n",
     "a hostPort in a namespace that enforces"),
    ("deploy/Dockerfile", "USER 10001:10001", "USER editfeed", "must end as USER 10001"),
    ("deploy/grafana/editfeed-dashboard.json", "editfeed_pool_busy_workers{", "editfeed_pool_busy_worker{",
     "'editfeed_pool_busy_worker' is not an editfeed metric"),
    ("deploy/grafana/editfeed-dashboard.json", "histogram_quantile(0.5, sum by (le) (rate(",
     "histogram_quantile(0.5, sum by (le) (rate((", "PromQL does not parse"),
    # The pack Jobs.
    ("deploy/kubernetes/pack/job-pack.yaml", "completionMode: Indexed", "completionMode: NonIndexed",
     "completionMode must be Indexed"),
    ("deploy/kubernetes/pack/job-pack.yaml", "completions: 16", "completions: 12", "completions 12 is not the N of --part .../16"),
    ("deploy/kubernetes/pack/job-pack.yaml", "- $(JOB_COMPLETION_INDEX)/16", "- 0/16", "--part must be $(JOB_COMPLETION_INDEX)/N"),
    ("deploy/kubernetes/pack/job-pack.yaml", "fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']",
     "fieldPath: metadata.name", "env JOB_COMPLETION_INDEX must be the fieldRef"),
    ("deploy/kubernetes/pack/job-pack.yaml", "pico-banana-400k/parts/$(JOB_COMPLETION_INDEX)\n", "pico-banana-400k/parts\n",
     "must end in a folder named $(JOB_COMPLETION_INDEX)"),
    ("deploy/kubernetes/pack/job-pack.yaml", "            - --resume\n", "", "--resume missing"),
    ("deploy/kubernetes/pack/job-pack.yaml", '            - "8"\n', '            - "4"\n', "resources.requests.cpu 8 exceeds --threads 4"),
    ("deploy/kubernetes/pack/job-pack.yaml", '            - "8"\n', '            - "64"\n', "--threads 64 is more than 4 per requested core"),
    ("deploy/kubernetes/pack/job-pack.yaml", "            runAsUser: 10001", "            runAsUser: 0", "runAsUser must be 10001"),
    ("deploy/kubernetes/pack/job-pack.yaml", "            readOnlyRootFilesystem: true", "            readOnlyRootFilesystem: false",
     "Job/editfeed-pack: readOnlyRootFilesystem must be true"),
    ("deploy/kubernetes/pack/job-pack.yaml", "            - secretRef:\n                name: editfeed-aws",
     "            - configMapRef:\n                name: editfeed-aws", "credentials belong in a Secret, not a ConfigMap"),
    ("deploy/kubernetes/pack/job-pack.yaml", "            - name: AWS_DEFAULT_REGION\n              value: us-east-1\n",
     "            - name: AWS_DEFAULT_REGION\n              value: us-east-1\n            - name: AWS_SECRET_ACCESS_KEY\n              value: x\n",
     "env AWS_SECRET_ACCESS_KEY looks like a credential"),
    ("deploy/kubernetes/pack/job-pack.yaml", "        app.kubernetes.io/name: editfeed-pack\n", "        app.kubernetes.io/name: editfeed\n",
     "Service editfeed selects the pods of Job/editfeed-pack"),
    ("deploy/kubernetes/pack/job-merge.yaml", "            - s3://example-training-data/pico-banana-400k/parts/15\n", "",
     "does not name part 15"),
    ("deploy/kubernetes/pack/job-merge.yaml", "            - s3://example-training-data/pico-banana-400k/parts/3\n",
     "            - s3://example-training-data/pico-banana-400k/parts/3\n            - s3://example-training-data/pico-banana-400k/parts/3\n",
     "names the part folder s3://example-training-data/pico-banana-400k/parts/3 more than once"),
    ("deploy/kubernetes/pack/job-merge.yaml", "            - --out\n            - s3://example-training-data/pico-banana-400k\n",
     "            - --out\n            - s3://example-training-data/pico-banana-400k-merged\n", "is not inside the merge's --out"),
    ("deploy/kubernetes/pack/job-merge.yaml", "  backoffLimit: 6", "  backoffLimit: 0", "backoffLimit must be at least 1"),
    ("deploy/kubernetes/pack/kustomization.yaml", "  - job-merge.yaml\n", "", "job-merge.yaml is not listed"),
    ("deploy/kubernetes/kustomization.yaml", "  - service-peers.yaml\n", "  - service-peers.yaml\n  - pack\n",
     "the daemon's kustomization must not create Jobs"),
]
# Breakages only a helm render can see (skipped without helm).
HELM_MUTATIONS = [
    ("deploy/helm/editfeed/templates/service.yaml", "internalTrafficPolicy: {{ .Values.service.internalTrafficPolicy }}",
     "internalTrafficPolicy: Cluster", "must have internalTrafficPolicy: Local"),
    ("deploy/helm/editfeed/values.yaml", "  readOnlyRootFilesystem: true", "  readOnlyRootFilesystem: false",
     "readOnlyRootFilesystem must be true"),
    ("deploy/helm/editfeed/templates/daemonset.yaml", "terminationGracePeriodSeconds: {{ include \"editfeed.gracePeriod\" . }}",
     "terminationGracePeriodSeconds: 5", "must exceed drain_seconds"),
    ("deploy/helm/editfeed/templates/pack-job.yaml", "completionMode: Indexed", "completionMode: NonIndexed",
     "completionMode must be Indexed"),
    ("deploy/helm/editfeed/templates/_helpers.tpl",
     'app.kubernetes.io/name: {{ printf "%s-pack" (include "editfeed.name" . | trunc 58 | trimSuffix "-") }}',
     'app.kubernetes.io/name: {{ include "editfeed.name" . }}', "selects the pods of Job/editfeed-pack"),
    ("deploy/helm/editfeed/templates/pack-job.yaml", '(printf "%s/parts/$(JOB_COMPLETION_INDEX)" $out)',
     '(printf "%s/part-$(JOB_COMPLETION_INDEX)" $out)', "does not name part 0"),
    ("deploy/helm/editfeed/templates/pack-job.yaml", '{{- $args = append $args "--resume" -}}', "", "--resume missing"),
    ("deploy/kubernetes/pack/job-pack.yaml", "backoffLimitPerIndex: 3", "backoffLimitPerIndex: 2", "pack differs from kustomize"),
]


# What main() checks, by section; a breakage of a file reruns the sections that read it.
SECTIONS = ("image", "kubernetes", "helm", "grafana")


def sections_of(rel: str) -> list[str]:
    if rel.startswith("deploy/grafana/"):
        return ["grafana"]
    if rel.startswith("deploy/kubernetes/"):
        return ["kubernetes"]
    if rel.startswith("deploy/helm/"):
        return ["kubernetes", "helm"]
    return ["image"]


def self_test(root: Path, passthrough: list[str], helm: bool) -> list[str]:
    import shutil
    import tempfile

    out = []
    with tempfile.TemporaryDirectory(prefix="validate-deploy-") as tmp:
        base = Path(tmp) / "repo"
        base.mkdir()
        for rel in ("deploy", "src", "proto", "benches"):
            if (root / rel).is_dir():
                shutil.copytree(root / rel, base / rel, ignore=shutil.ignore_patterns("target", "__pycache__"))
        for rel in ("Cargo.toml", "Cargo.lock", "build.rs"):
            if (root / rel).exists():
                shutil.copy2(root / rel, base / rel)
        for rel, old, new, expect in MUTATIONS + (HELM_MUTATIONS if helm else []):
            path = base / rel
            original = path.read_text()
            if old not in original:
                out.append(f"{rel}: the self-test's text {old!r} is no longer there (update MUTATIONS)")
                continue
            path.write_text(original.replace(old, new, 1))
            sections = sections_of(rel) + (["helm"] if helm and (rel, old, new, expect) in HELM_MUTATIONS else [])
            try:
                p = subprocess.run([sys.executable, __file__, "--root", str(base), "--only", ",".join(sections), *passthrough],
                                   capture_output=True, text=True, timeout=300)
            finally:
                path.write_text(original)
            if p.returncode != 1 or expect not in p.stdout:
                out.append(f"{rel}: {old!r} -> {new!r} not caught (exit {p.returncode}; expected {expect!r})")
    return out


def kustomization_lists(kdir: Path, files: list[Path]) -> list[str]:
    """kustomization.yaml in `kdir` lists exactly `files` (plus any folder that is itself
    a kustomization)."""
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    out = []
    if k.get("kind") != "Kustomization":
        out.append("kind must be Kustomization")
    listed = {str(r).rstrip("/") for r in k.get("resources") or []}
    present = {f.name for f in files}
    bases = {r for r in listed if (kdir / r / "kustomization.yaml").is_file()}
    out += [f"{r} is listed but does not exist" for r in sorted(listed - present - bases)]
    out += [f"{r} is not listed in resources" for r in sorted(present - listed)]
    return out


def no_jobs(objs: list[dict[str, Any]], kdir: Path) -> list[str]:
    """The daemon's kustomization creates no Job: neither in `objs` (its render, or its
    files) nor in a folder it lists (seen even without kubectl)."""
    found = [o for o in objs if o.get("kind") in ("Job", "CronJob")]
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    for r in k.get("resources") or []:
        base = kdir / str(r)
        if base.is_dir():
            for f in sorted(base.rglob("*.y*ml")):
                found += [o for o in yaml.safe_load_all(f.read_text())
                          if isinstance(o, dict) and o.get("kind") in ("Job", "CronJob") and not any(o == x for x in found)]
    return [f"{kn(o)}: the daemon's kustomization must not create Jobs (a pack is a one-off: deploy/kubernetes/pack)"
            for o in found]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", type=Path)
    ap.add_argument("--helm", default="", help="helm binary; empty: static chart checks only")
    ap.add_argument("--kubectl", default="", help="kubectl binary for `kubectl kustomize`; empty: skip the render")
    ap.add_argument("--kubernetes-versions", default="1.29,1.37",
                    help="comma-separated Kubernetes versions to validate against (oldest supported, newest)")
    ap.add_argument("--only", default="", help=f"comma-separated sections to check ({', '.join(SECTIONS)}); default all "
                    "(the self-test uses it to rerun only what a breakage touches)")
    ap.add_argument("--self-test", action="store_true",
                    help="also break each deploy file in known ways (in a copy) and check that every breakage is caught")
    a = ap.parse_args()
    root = a.root.resolve()
    versions = [v.strip() for v in a.kubernetes_versions.split(",") if v.strip()]
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    if only - set(SECTIONS):
        ap.error(f"--only: unknown sections {sorted(only - set(SECTIONS))}; expected {', '.join(SECTIONS)}")

    def want(section: str) -> bool:
        return not only or section in only

    report = Report()

    # kubernetes-validate reloads its large schema files for every object; cache them.
    from kubernetes_validate import utils as kv
    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

    print(f"validate-deploy: Kubernetes schemas {', '.join(versions)} (strict)")
    for kind, least in MIN_VERSION.items():
        older = [v for v in versions if version_tuple(v) < least]
        if older:
            report.notes.append(f"{kind} objects need Kubernetes {least[0]}.{least[1]} or later: not validated "
                                f"against {', '.join(older)}")

    # Dockerfile and the image's default config.
    if want("image"):
        report.run("dockerfile: deploy/Dockerfile and its build context", lambda: check_dockerfile(root))
        report.run(f"config: deploy/editfeed.toml (the image's default; keys from {config_schema(root)[2]})",
                   lambda: check_config_text((root / "deploy/editfeed.toml").read_text(), root)[1])

    # Raw manifests.
    if want("kubernetes") or want("helm"):  # helm compares its renders with these
        def kustomization(kdir: Path, listing: str, raw_policy: tuple[str, Policy],
                          render_policy: tuple[str, Policy]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, Any]:
            """Validates a kustomization folder's manifests and its policy, raw and (with
            kubectl) rendered; returns the raw objects, the rendered ones (None without
            kubectl) and the policy summary (of the render when there is one)."""
            raw: list[dict[str, Any]] = []
            files = sorted(p for p in kdir.glob("*.y*ml") if p.name != "kustomization.yaml")
            for f in files:
                def one(f: Path = f) -> list[str]:
                    docs = load_yaml_docs(f.read_text(), f.name)
                    raw.extend(docs)
                    if not docs:
                        return ["no objects"]
                    return validate_schemas(docs, versions)
                report.run(f"kubernetes: {f.relative_to(root)}", one)
            report.run(f"kubernetes: {listing} lists every manifest", lambda: kustomization_lists(kdir, files))
            report.run(raw_policy[0], lambda: raw_policy[1](raw)[0])
            if not a.kubectl:
                return raw, None, None
            rendered: list[dict[str, Any]] = []
            summary = None

            def kustomize() -> list[str]:
                p = run([a.kubectl, "kustomize", str(kdir)])
                if p.returncode != 0:
                    return [f"kubectl kustomize failed: {p.stderr.strip()}"]
                rendered.extend(load_yaml_docs(p.stdout, "kustomize"))
                return validate_schemas(rendered, versions)

            if report.run(f"kubernetes: kubectl kustomize {kdir.relative_to(root)}", kustomize):
                def pol() -> list[str]:
                    nonlocal summary
                    problems, summary = render_policy[1](rendered)
                    return problems
                report.run(render_policy[0], pol)
            return raw, rendered, summary

        kdir = root / "deploy/kubernetes"
        daemon_policy: Policy = lambda objs: check_policy(objs, root)
        raw, rendered, kustomize_summary = kustomization(
            kdir, "kustomization.yaml", ("policy: deploy/kubernetes manifests", daemon_policy),
            ("policy: kustomize render", daemon_policy))
        if rendered is None:
            report.skip("kustomize render", "kubectl not found; the raw manifests were validated instead")
            kustomize_summary = check_policy(raw, root)[1]

        # The daemon's kustomization deploys no Job; the pack has a kustomization of its own.
        daemon_objs = rendered if rendered is not None and kustomize_summary is not None else raw
        report.run("kubernetes: deploy/kubernetes creates no Job (the pack is deploy/kubernetes/pack)",
                   lambda: no_jobs(daemon_objs, kdir))
        pack_raw, pack_rendered, pack_summary = kustomization(
            kdir / "pack", "pack/kustomization.yaml",
            ("policy: deploy/kubernetes/pack manifests (with the daemon's)", lambda objs: check_pack(objs, raw)),
            ("policy: pack kustomize render (with the daemon's)", lambda objs: check_pack(objs, daemon_objs)))
        if pack_rendered is None:
            pack_summary = check_pack(pack_raw, raw)[1]

    # Helm chart.
    if want("helm"):
        chart = root / "deploy/helm/editfeed"
        report.run("helm: Chart.yaml, values.yaml against values.schema.json, ci values, templates",
                   lambda: check_chart_static(chart))
        if not a.helm:
            report.skip("helm lint/template",
                        "helm not available from the registries: chart not linted/rendered")
        else:
            def lint() -> list[str]:
                p = run([a.helm, "lint", "--strict", str(chart)])
                return [] if p.returncode == 0 else [(p.stdout + p.stderr).strip()]

            report.run("helm: lint --strict", lint)
            for f in sorted((chart / "ci").glob("*-values.yaml")):
                def lint_f(f: Path = f) -> list[str]:
                    p = run([a.helm, "lint", "--strict", str(chart), "-f", str(f)])
                    return [] if p.returncode == 0 else [(p.stdout + p.stderr).strip()]
                report.run(f"helm: lint --strict -f ci/{f.name}", lint_f)

            variants: list[tuple[str, list[str]]] = [("default values", [])]
            variants += [(f"ci/{f.name}", ["-f", str(f)]) for f in sorted((chart / "ci").glob("*-values.yaml"))]
            variants.append(("pack.enabled=true", ["--set", "pack.enabled=true", "--set", "pack.merge.enabled=true"]))
            for label, args in variants:
                def render(args: list[str] = args, label: str = label) -> list[str]:
                    objs, err = helm_template(a.helm, chart, args)
                    if objs is None:
                        return [f"helm template failed: {err}"]
                    problems = validate_schemas(objs, versions)
                    policy, summary = check_policy(objs, root)
                    problems += [f"policy: {p}" for p in policy]
                    notes, err = helm_notes(a.helm, chart, args)
                    if notes is None:
                        problems.append(f"NOTES.txt does not render: {err}")
                    elif "svc.cluster.local" not in notes and "NODE_IP" not in notes:
                        problems.append("NOTES.txt names no endpoint for trainers")
                    if label == "default values" and kustomize_summary is not None:
                        problems += [f"differs from kustomize: {d}" for d in diff_summaries(kustomize_summary, summary)]
                    if by_kind(objs, "Job"):
                        # pack.merge.enabled is off until the pack is complete.
                        pack_problems, psummary = check_pack(objs, objs, require_merge=False)
                        problems += [f"pack policy: {p}" for p in pack_problems]
                        if label == "pack.enabled=true" and pack_summary is not None:
                            problems += [f"pack differs from kustomize: {d}" for d in diff_summaries(pack_summary, psummary)]
                    elif label == "pack.enabled=true":
                        problems.append("pack.enabled=true renders no Job")
                    return problems
                same = {"default values": ", same as kustomize", "pack.enabled=true": ", pack Jobs same as kustomize"}.get(label, "")
                report.run(f"helm: template ({label}): schemas, policy, NOTES{same}", render)

            refused = [
                ("grace period not above drain_seconds", ["--set", "terminationGracePeriodSeconds=30"], "must exceed drain_seconds"),
                ("hostPort with maxSurge", ["--set", "hostPort.enabled=true", "--set", "updateStrategy.rollingUpdate.maxSurge=1",
                                            "--set", "updateStrategy.rollingUpdate.maxUnavailable=0"], "maxSurge"),
                ("unknown values key", ["--set", "replicaCount=3"], "replicaCount"),
                ("config value that is a table", ["--set", "config.extra.key=1"], "config.extra"),
                ("unknown cache type", ["--set", "cache.type=nfs"], "cache.type"),
                ("pack without out", ["--set", "pack.enabled=true", "--set", "pack.out="], "pack.out"),
                ("pack sourceMap without sourceImages", ["--set", "pack.enabled=true", "--set", "pack.sourceImages="],
                 "pack.sourceMap and pack.sourceImages"),
                ("pack parallelism above parts", ["--set", "pack.enabled=true", "--set", "pack.parallelism=20"], "pack.parallelism"),
                ("unknown pack key", ["--set", "pack.partz=4"], "partz"),
            ]
            for label, args, needle in refused:
                def refuse(args: list[str] = args, needle: str = needle) -> list[str]:
                    objs, err = helm_template(a.helm, chart, args)
                    if objs is not None:
                        return ["rendered, but must be refused"]
                    return [] if needle in err else [f"refused for another reason: {err}"]
                report.run(f"helm: refuses {label}", refuse)

    # Grafana.
    if want("grafana"):
        metrics = metrics_from_source(root)
        source = f"src/metrics.rs, {len(metrics)} metrics" if metrics else "the built-in list (no src/metrics.rs names)"
        report.run(f"grafana: deploy/grafana/editfeed-dashboard.json (metrics from {source})",
                   lambda: check_grafana(root / "deploy/grafana/editfeed-dashboard.json", metrics or METRICS))

    if a.self_test:
        passthrough = ["--helm", a.helm, "--kubectl", a.kubectl, "--kubernetes-versions", a.kubernetes_versions]
        n = len(MUTATIONS) + (len(HELM_MUTATIONS) if a.helm else 0)
        report.run(f"self-test: {n} known breakages are each caught", lambda: self_test(root, passthrough, bool(a.helm)))

    for n in report.notes:
        print(f"note: {n}")
    if report.failed:
        print("failed: " + "; ".join(report.failed))
    print(f"validate-deploy: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
