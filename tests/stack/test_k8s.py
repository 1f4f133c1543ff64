"""The Kubernetes manifests, checked offline: every core object against the Kubernetes schema
(kubernetes-validate, strict), and what no schema here knows (KEDA's objects, which settings and
roles the containers use) against the code itself. They were never applied to a cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from batchgate.settings import SECTIONS, Settings, SimulatorSettings
from stack.container import ROLES
from stack.images import APP_IMAGES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
#: Object kinds whose schema is not Kubernetes' own: KEDA's custom resources.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


@pytest.mark.parametrize(
    "doc",
    [d for d in manifests() if d["kind"] not in KEDA_KINDS],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_every_core_object_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest_and_generates_the_secret_from_an_ignored_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert kustomization["secretGenerator"][0]["envs"] == ["secrets.env"]
    assert "k8s/secrets.env" in (REPO / ".gitignore").read_text().split()


def test_workers_scale_on_the_celery_queue_and_the_api_on_cpu() -> None:
    workers = by_kind("ScaledObject")["worker"]
    assert workers["apiVersion"] == "keda.sh/v1alpha1"
    assert workers["spec"]["scaleTargetRef"]["name"] in by_kind("Deployment")
    (trigger,) = workers["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["address"] == "redis:6379"
    assert trigger["metadata"]["listName"] == Settings().broker.queue  # the list kombu pushes to
    assert int(trigger["metadata"]["listLength"]) > 0
    auth = by_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert auth["spec"]["secretTargetRef"][0] == {
        "parameter": "password",
        "name": "batchgate-secrets",
        "key": "REDIS_PASSWORD",
    }
    hpa = by_kind("HorizontalPodAutoscaler")["api"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert by_kind("Deployment")["beat"]["spec"]["replicas"] == 1  # never two beats


def _known_variables() -> set[str]:
    names = {"BATCHGATE_" + f.name.upper() for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    names |= {"BATCHGATE_SIM_" + f.name.upper() for f in dataclasses.fields(SimulatorSettings)}
    return names | {"GEMINI_API_KEY", "DATABASE_URL", "FLOWER_BASIC_AUTH"}


def test_containers_run_known_roles_with_known_settings_and_the_key_only_in_the_worker() -> None:
    config = by_kind("ConfigMap")["batchgate-config"]["data"]
    assert set(config) <= _known_variables()
    secret_keys = {
        line.split("=")[0]
        for line in (K8S / "secrets.example.env").read_text().splitlines()
        if line and not line.startswith("#")
    }
    with_key = []
    for name, deployment in {**by_kind("Deployment"), **by_kind("StatefulSet")}.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert ref is None or ref["key"] in secret_keys, (name, env)
                official = {"PGDATA", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "REDIS_PASSWORD"}
                assert env["name"] in _known_variables() | official, (name, env["name"])
                if env["name"] == "GEMINI_API_KEY":
                    with_key.append(name)
            if container["image"].split(":")[0] in {image.split(":")[0] for image in APP_IMAGES.values()}:
                assert container["args"][0] in ROLES, name
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command")
            if probe:
                assert probe[:2] == ["/app/entrypoint.sh", "health"] and probe[2] in ROLES
    assert with_key == ["worker"]
    # nginx resolves the API's Service once: its address is stable, and there is no Docker DNS.
    assert config["BATCHGATE_NGINX_RESOLVER"] == ""
