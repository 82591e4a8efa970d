"""The deploy files probe each service over HTTP and expose its metrics port."""

from __future__ import annotations

import re
from pathlib import Path

from pimms_cli.config import SERVICES
from pimms_servicekit.settings import HTTP_PORTS

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _k8s_documents() -> dict[tuple[str, str], str]:
    text = (DEPLOY / "k8s" / "pimms.yaml").read_text(encoding="utf-8")
    documents = {}
    for document in text.split("\n---\n"):
        kind = re.search(r"^kind: (\w+)", document, re.MULTILINE)
        name = re.search(r"^  name: (\S+)", document, re.MULTILINE)
        if kind and name:
            documents[(kind.group(1), name.group(1))] = document
    return documents


def test_kubernetes_probes_each_service_over_http_on_its_port() -> None:
    documents = _k8s_documents()
    for spec in SERVICES:
        port = HTTP_PORTS[spec.name]
        deployment = documents[("Deployment", spec.name)]
        assert f"{{name: http, containerPort: {port}}}" in deployment
        assert f'{{name: {spec.env_prefix}HTTP_PORT, value: "{port}"}}' in deployment
        assert f"{{name: {spec.env_prefix}HTTP_HOST, value: 0.0.0.0}}" in deployment
        probes = dict(
            re.findall(r"(\w+Probe):\n\s+httpGet: \{path: (\S+), port: http\}", deployment)
        )
        assert probes == {
            "startupProbe": "/health/live",
            "livenessProbe": "/health/live",
            "readinessProbe": "/health/ready",
        }
        assert f'prometheus.io/port: "{port}"' in deployment
        service = documents[("Service", spec.name)]
        assert f"{{name: http, port: {port}, targetPort: http}}" in service
    gateways = documents[("Deployment", "partner-gateways")]
    assert "PIMMS_SNCF_WEBHOOK_SECRET_PREVIOUS" in gateways
    assert "pimms_servicekit.health" not in "".join(documents.values())


def test_compose_checks_readiness_over_http_and_publishes_each_metrics_port() -> None:
    compose = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert "/health/ready" in compose
    assert "pimms_servicekit.health" not in compose
    scrape = (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    for spec in SERVICES:
        port = HTTP_PORTS[spec.name]
        block = compose.split(f"\n  {spec.name}:\n", 1)[1].split("\n\n", 1)[0]
        assert f'HTTP_PORT: "{port}"' in block
        assert f"{spec.env_prefix}HTTP_HOST: 0.0.0.0" in block
        assert f'ports: ["{port}:{port}"]' in block
        assert f'"{spec.name}:{port}"' in scrape
