"""deploy/ files parse and carry the fields their tools require."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _load(name: str) -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict)
    return data


def test_raycluster() -> None:
    doc = _load("raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    spec = doc["spec"]
    assert isinstance(spec, dict) and spec["headGroupSpec"]["template"]["spec"]["containers"]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["template"]["spec"]["containers"][0]["image"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob() -> None:
    doc = _load("rayjob.yaml")
    assert doc["kind"] == "RayJob" and doc["spec"]["entrypoint"]  # type: ignore[index]
    entry = str(doc["spec"]["entrypoint"]).split()[-1]  # type: ignore[index]
    assert (DEPLOY.parent / entry).exists()
    assert doc["spec"]["rayClusterSpec"]["headGroupSpec"]  # type: ignore[index]


def test_cluster_launcher() -> None:
    doc = _load("cluster-launcher.yaml")
    for field in ("cluster_name", "provider", "available_node_types", "head_node_type", "head_start_ray_commands"):
        assert field in doc, field
    assert doc["head_node_type"] in doc["available_node_types"]  # type: ignore[operator]


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("FROM rayproject/ray:2.60")
    assert any(line.startswith("CMD") for line in lines) and "fluentfn serve" in text
    for line in lines:
        if line.startswith("COPY"):
            for src in line.split()[2:-1]:
                assert (DEPLOY.parent / src).exists(), src
