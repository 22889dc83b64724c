"""deploy/ files parse and carry the fields their tools require."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_rayjob_joins_the_raycluster() -> None:
    doc = _load("rayjob.yaml")
    assert doc["kind"] == "RayJob" and doc["spec"]["entrypoint"]  # type: ignore[index]
    entry = str(doc["spec"]["entrypoint"]).split()[-1]  # type: ignore[index]
    assert (DEPLOY.parent / entry).exists()
    # it runs on deploy/raycluster.yaml's cluster (its Redis store and token), not a private one
    assert doc["spec"]["clusterSelector"] == {"ray.io/cluster": _load("raycluster.yaml")["metadata"]["name"]}  # type: ignore[index]
    assert "rayClusterSpec" not in doc["spec"]  # type: ignore[operator]


def test_kuberay_autoscaling_is_on() -> None:
    spec = _load("raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True  # type: ignore[index]


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


def _docs(name: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if isinstance(d, dict)]


def _secret_refs(node: object) -> set[str]:
    """Secrets a manifest reads: environment values (secretKeyRef) and volumes (secretName)."""
    if isinstance(node, dict):
        found = {str(node["secretKeyRef"]["name"])} if isinstance(node.get("secretKeyRef"), dict) else set()
        if isinstance(node.get("secret"), dict) and "secretName" in node["secret"]:
            found.add(str(node["secret"]["secretName"]))
        for value in node.values():
            found |= _secret_refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_secret_refs(v) for v in node)) if node else set()
    return set()


def test_every_secret_and_service_a_manifest_uses_exists() -> None:
    readme = (DEPLOY / "README.md").read_text()
    manifests = [p.name for p in DEPLOY.glob("*.yaml")]
    services = {str(d["metadata"]["name"]) for m in manifests for d in _docs(m) if d.get("kind") == "Service"}  # type: ignore[index]
    for m in manifests:
        for doc in _docs(m):
            for secret in _secret_refs(doc):
                assert f"kubectl create secret generic {secret}" in readme, (m, secret)
            text = yaml.safe_dump(doc)
            for host in {h.split(":")[0] for h in text.split("@")[1:] if h.startswith("fluentfn-")}:
                assert host in services, (m, host)


def test_redis_is_never_open() -> None:
    for doc in _docs("redis.yaml"):
        if doc.get("kind") == "Deployment":
            args = doc["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]
            assert "--requirepass" in args and "--appendonly" in args
        if doc.get("kind") == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP"  # type: ignore[union-attr]
    launcher = (DEPLOY / "cluster-launcher.yaml").read_text()
    assert "--requirepass" in launcher and "0.0.0.0" not in launcher and "protected-mode no" not in launcher


def _pod_templates(node: object) -> list[dict[str, object]]:
    """Every pod template (``template: {spec: {containers: ...}}``) inside a custom resource."""
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        template = node.get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict) and "containers" in template["spec"]:
            found.append(template)
        for value in node.values():
            found += _pod_templates(value)
    elif isinstance(node, list):
        for value in node:
            found += _pod_templates(value)
    return found


def test_manifests_validate_against_kubernetes_schemas() -> None:
    """Standard kinds against the Kubernetes schema; the pod templates inside KubeRay's
    custom resources (which kubernetes-validate has no schema for) as Pods."""
    import kubernetes_validate as kv

    version = kv.latest_version()
    checked = 0
    for manifest in sorted(DEPLOY.glob("*.yaml")):
        for doc in _docs(manifest.name):
            if "apiVersion" not in doc:  # the Ray cluster launcher's config is not a Kubernetes object
                continue
            if str(doc["apiVersion"]).startswith("ray.io/"):
                for template in _pod_templates(doc):
                    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": template["spec"]}
                    kv.validate(pod, version, strict=True)
                    checked += 1
            else:
                kv.validate(doc, version, strict=True)
                checked += 1
    assert checked >= 5  # redis Deployment + Service, 3 RayCluster pod templates


def test_validation_catches_a_broken_manifest() -> None:
    import kubernetes_validate as kv

    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)


def test_the_cluster_uses_mutual_tls_and_redis_over_tls() -> None:
    head = _load("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    env = {e["name"]: e.get("value", "") for e in head["env"]}
    assert env["FLUENTFN_STORE"].startswith("rediss://:$(REDIS_PASSWORD)@fluentfn-redis:6379/")
    assert all(env[f"FLUENTFN_TLS_{p}"] for p in ("CERT", "KEY", "CA", "SERVER_NAME"))
    redis = _docs("redis.yaml")[0]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert "--tls-port" in redis["args"] and redis["args"][redis["args"].index("--port") + 1] == "0"


def test_the_grafana_dashboard_asks_only_for_metrics_hosts_export() -> None:
    import json
    import re

    from fluentfn._phases import TALLY
    from fluentfn.host._metrics import HostCollector, MethodTally

    class _Engine:  # what a host's collector reads, with one method and one turn timed
        group, host_id, live_identities = "G", "h0", 1
        methods = MethodTally()

        def totals(self) -> dict[str, int]:
            from fluentfn._stats import new_counters

            return new_counters()

    _Engine.methods.observe("T.m", "T", "m", 0.001, False)
    TALLY.observe("T.m", [("queue", 0.001), ("run", 0.002)])
    exported = set()
    for family in HostCollector(_Engine()).collect():
        for sample in family.samples:
            exported.add(sample.name)
    dashboard = json.loads((DEPLOY / "grafana" / "fluentfn-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    asked = {m for e in exprs for m in re.findall(r"\b(fluentfn_[a-z_]+)\b", e)}
    assert asked and asked <= exported, asked - exported
    assert {"fluentfn_call_phase_seconds_bucket", "fluentfn_calls_total"} <= asked
