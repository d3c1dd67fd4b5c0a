"""The container and Kubernetes files agree with the server: probes, metric names, config, read-only store."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from reranker.server.config import load_config  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _docs() -> dict[str, dict]:
    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_manifests_parse_and_kustomization_lists_them() -> None:
    docs = _docs()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "PersistentVolumeClaim", "Kustomization"} <= set(
        docs
    )
    listed = set(docs["Kustomization"]["resources"])
    assert listed == {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}


def test_probes_use_grpc_health_and_the_store_is_read_only() -> None:
    from reranker.server.app import SERVICE_NAME

    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"]["port"] == 50051
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["store"]["readOnly"] is True
    store = next(v for v in pod["volumes"] if v["name"] == "store")
    assert store["persistentVolumeClaim"]["readOnly"] is True
    assert _docs()["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_autoscaling_metric_is_one_the_server_exports() -> None:
    from prometheus_client import CollectorRegistry

    from reranker.server.metrics import Metrics

    names = {m.name for m in Metrics(CollectorRegistry()).registry.collect()}
    (metric,) = _docs()["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] in names


def test_configmap_server_config_loads(tmp_path: Path) -> None:
    text = _docs()["ConfigMap"]["data"]["server.toml"]
    (tmp_path / "server.toml").write_text(text)
    cfg = load_config(tmp_path / "server.toml")
    assert cfg.default_model == "colbert" and cfg.models[0].store.startswith("/store/")


def test_dockerfile_installs_only_the_serve_extra() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install ".[serve]"' in text and "torch" not in text.split("FROM", 1)[1].replace("no torch", "")
    assert "USER 10001" in text and "/etc/reranker/server.toml" in text
