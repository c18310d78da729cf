"""The Kubernetes manifests in deploy/k8s: they render, validate offline and pass the policy scan.

Each kustomization is rendered with `kubectl kustomize`. Core objects are validated against the
Kubernetes 1.30 OpenAPI schemas bundled in kubernetes-validate (strict: an unknown field fails);
KEDA's ScaledObject and TriggerAuthentication are not in those schemas, so they are checked
against the small schemas below (their required fields and types) and against what they point
at. checkov then scans every rendered object; a failed check fails the test, and a skip is
accepted only for the checks in ALLOWED_SKIPS, with the reason in the manifest's annotation.
checkov pins `packaging<24` while pytest needs `packaging>=24`, so it lives in its own virtualenv
(.venv-tools, created on first use from CHECKOV_PIN).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bridge import routing
from bridge.topics import CATALOG
from core.queues import TaskQueue

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = ("base", "base/jobs", "overlays/production", "overlays/production/jobs")
KUBERNETES_VERSION = "1.30"
KUBECTL = shutil.which("kubectl")

TOOLS_VENV = ROOT / ".venv-tools"
CHECKOV_PIN = "checkov==3.3.30"
# The checks a manifest may skip (checkov.io/skipN annotations), each for a reason said there.
ALLOWED_SKIPS = {
    "CKV_K8S_35": "secrets as environment variables: settings.py reads them from the environment",
    "CKV_K8S_40": "uid 1001 is the image's user",
    "CKV_K8S_8": "beat has no health endpoint",
    "CKV_K8S_9": "beat receives no traffic",
}

CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                        "additionalProperties": False,
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"enum": ["kafka", "redis"]},
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                },
                                # KEDA reads every metadata value as a string.
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["secretTargetRef"],
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}
REQUIRED_KEDA_METADATA = {
    "kafka": {"bootstrapServers", "consumerGroup", "lagThreshold"},
    "redis": {"address", "listName", "listLength"},
}


def render(kustomization: str) -> str:
    assert KUBECTL is not None
    result = subprocess.run(  # noqa: S603 - our own kubectl, our own paths
        [KUBECTL, "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH: the manifests cannot be rendered (kubectl kustomize)")
    return {name: [d for d in yaml.safe_load_all(render(name)) if d] for name in KUSTOMIZATIONS}


def objects(
    rendered: dict[str, list[dict[str, Any]]], kind: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    return [(name, d) for name, docs in rendered.items() for d in docs if kind is None or d["kind"] == kind]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def test_core_objects_are_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    errors = []
    for name, obj in objects(rendered):
        if obj["kind"] in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(
                f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{name}: {obj['kind']}/{obj['metadata']['name']}: no Kubernetes schema and no CRD schema"
            )
    assert not errors, "\n".join(errors)


def test_keda_objects_match_their_schema_and_targets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    production = rendered["overlays/production"]
    deployments = {d["metadata"]["name"] for d in production if d["kind"] == "Deployment"}
    auths = {d["metadata"]["name"] for d in production if d["kind"] == "TriggerAuthentication"}
    scaled = {}
    for obj in production:
        if obj["kind"] in CRD_SCHEMAS:
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
        if obj["kind"] == "ScaledObject":
            spec = obj["spec"]
            assert spec["scaleTargetRef"]["name"] in deployments, obj["metadata"]["name"]
            assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
            for trigger in spec["triggers"]:
                missing = REQUIRED_KEDA_METADATA[trigger["type"]] - trigger["metadata"].keys()
                assert not missing, f"{obj['metadata']['name']}: {trigger['type']} trigger lacks {missing}"
                assert trigger["authenticationRef"]["name"] in auths
            scaled[spec["scaleTargetRef"]["name"]] = spec
    # Every worker scales on its own queue's Redis list (Celery's Redis transport names it so).
    for queue in TaskQueue:
        (trigger,) = scaled[f"worker-{queue.value}"]["triggers"]
        assert (trigger["type"], trigger["metadata"]["listName"]) == ("redis", queue.value)
    # The bridge on its consumer group's lag, never past the partitions one member can own.
    (trigger,) = scaled["bridge"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "kafka-platform-bridge"  # KAFKA_CONSUMER_GROUP's default
    consumed = re.compile(routing.subscription_pattern())
    partitions = [t.partitions for t in CATALOG if consumed.match(t.name)]
    assert partitions, "the bridge consumes no catalog topic?"
    assert scaled["bridge"]["maxReplicaCount"] <= min(partitions)


def test_processes_are_deployed_as_the_platform_runs_them(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("base", "overlays/production"):
        deployments = {d["metadata"]["name"]: d for d in rendered[name] if d["kind"] == "Deployment"}
        expected = {"web", "bridge", "beat", "flower"} | {f"worker-{q.value}" for q in TaskQueue}
        assert set(deployments) == expected, name
        for queue in TaskQueue:
            command = pod_spec(deployments[f"worker-{queue.value}"])["containers"][0]["command"]
            assert command[:4] == ["celery", "-A", "kafka_platform", "worker"]
            assert command[command.index("-Q") + 1] == queue.value
        beat = deployments["beat"]
        assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
        pdbs = {
            d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component")
            for d in rendered[name]
            if d["kind"] == "PodDisruptionBudget"
        }
        assert {"web", "bridge", "worker"} <= pdbs
        queues = {
            d["spec"]["selector"]["matchLabels"].get("kafka-platform/queue")
            for d in rendered[name]
            if d["kind"] == "PodDisruptionBudget"
        }
        assert {q.value for q in TaskQueue} <= queues
        probes = {
            n: (c.get("livenessProbe", {}).get("httpGet", {}), c.get("readinessProbe", {}).get("httpGet", {}))
            for n, d in deployments.items()
            for c in pod_spec(d)["containers"]
        }
        assert (probes["web"][0]["path"], probes["web"][1]["path"]) == ("/live", "/ready")
        assert probes["bridge"][0]["path"] == "/healthz" and probes["bridge"][0]["port"] == "metrics"
        ports = {
            p["name"]: p["containerPort"] for p in pod_spec(deployments["bridge"])["containers"][0]["ports"]
        }
        assert ports["metrics"] == 9400  # BRIDGE_METRICS_PORT
        for queue in TaskQueue:
            liveness, readiness = probes[f"worker-{queue.value}"]
            assert liveness["path"] == readiness["path"] == "/healthz"
    jobs = {
        d["metadata"]["name"]: pod_spec(d)["containers"][0]["command"] for _, d in objects(rendered, "Job")
    }
    assert jobs == {
        "migrate": ["python", "manage.py", "migrate", "--noinput"],
        "kafka-topics": ["python", "manage.py", "kafka_topics", "--create"],
    }


def test_every_pod_is_locked_down(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """What checkov checks too, said once in our words: a read-only, unprivileged uid 1001."""
    for name, obj in objects(rendered):
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        spec = pod_spec(obj)
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities") == {"drop": ["ALL"]}, where
            assert (security.get("runAsUser"), security.get("runAsGroup")) == (1001, 1001), where
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), where
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], where
            # Secrets by reference only: no literal value for anything secret-looking.
            for env in container.get("env", []):
                assert "value" not in env or not re.search(r"KEY|SECRET|PASSWORD|TOKEN|URL", env["name"]), (
                    where
                )


def test_network_is_denied_unless_allowed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name in KUSTOMIZATIONS:
        policies = {d["metadata"]["name"]: d["spec"] for d in rendered[name] if d["kind"] == "NetworkPolicy"}
        assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, name
        assert {p["port"] for p in policies["allow-dns"]["egress"][0]["ports"]} == {53}
        components = {
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            for d in rendered[name]
            if d["kind"] in ("Deployment", "Job")
        }
        selected = {
            p["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
            for p in policies.values()
        }
        assert components <= selected, f"{name}: components without a policy: {components - selected}"


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov in .venv-tools, installed once from CHECKOV_PIN (a stamp names the pin)."""
    binary = TOOLS_VENV / "bin" / "checkov"
    stamp = TOOLS_VENV / f".installed-{CHECKOV_PIN}"
    if not stamp.exists():
        venv.create(TOOLS_VENV, with_pip=True, clear=True)
        result = subprocess.run(  # noqa: S603 - the pinned tool into our own virtualenv
            [
                str(TOOLS_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                CHECKOV_PIN,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"installing {CHECKOV_PIN} into {TOOLS_VENV} failed:\n{result.stderr[-3000:]}"
        )
        stamp.touch()
    return binary


def test_checkov_finds_no_failed_policy(
    rendered: dict[str, list[dict[str, Any]]], checkov: Path, tmp_path: Path
) -> None:
    files = []
    for name in KUSTOMIZATIONS:
        path = tmp_path / (name.replace("/", "-") + ".yaml")
        path.write_text(yaml.safe_dump_all(rendered[name], sort_keys=False))
        files += ["-f", str(path)]
    # --skip-download: offline, no guidelines fetched from the vendor's service.
    result = subprocess.run(  # noqa: S603 - the pinned checkov on files we just wrote
        [
            str(checkov),
            *files,
            "--framework",
            "kubernetes",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), f"checkov could not run:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    unexpected = [
        f"{c['check_id']} on {c['resource']}" for c in skipped if c["check_id"] not in ALLOWED_SKIPS
    ]
    assert not unexpected, f"skips outside ALLOWED_SKIPS: {unexpected}"
    assert all(len(c["check_result"].get("suppress_comment") or "") > 20 for c in skipped), (
        "a skip without its reason"
    )
    assert sum(r["summary"]["passed"] for r in reports) > 0 and result.returncode == 0
