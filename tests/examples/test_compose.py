"""The docker compose files of the shop, checked without a Docker engine: parsed, and every service, port,
command, environment variable and mounted file checked against the code and against veil's Settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from veil.settings import Settings

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
SHOP_SERVICES = ("gateway", "inventory", "payments")
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::-(?P<default>[^}]*))?\}")


def _load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((SHOP / name).read_text())
    assert isinstance(document, dict)
    return document


def _interpolate(value: object) -> str:
    """docker compose's ${VAR:-default} with nothing set in the environment."""
    return _INTERPOLATION.sub(lambda match: match["default"] or "", str(value))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment is written as a mapping"
    return {str(key): _interpolate(value) for key, value in environment.items()}


def _published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    result = {}
    for mapping in service.get("ports", []):
        host, container = str(mapping).split(":")
        result[int(container)] = int(host)
    return result


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


def test_the_services_and_the_jaeger_v2_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*SHOP_SERVICES, "jaeger", "prometheus", "alertmanager"}
    jaeger = services["jaeger"]
    assert re.fullmatch(r"cr\.jaegertracing\.io/jaegertracing/jaeger:2\.\d+\.\d+", jaeger["image"])
    assert _published(jaeger) == {16686: 16686, 4317: 4317, 4318: 4318}
    assert all(services[name]["profiles"] == ["monitoring"] for name in ("prometheus", "alertmanager"))
    assert all("profiles" not in services[name] for name in (*SHOP_SERVICES, "jaeger"))


def test_jaeger_runs_the_configuration_the_peer_tests_run(compose: dict[str, Any]) -> None:
    """The compose Jaeger mounts examples/shop/compose/jaeger.yaml, the file tests/peers/ and `veil demo --jaeger`
    start the jaeger binary with, listening on all interfaces inside its container, on the standard ports."""
    jaeger = compose["services"]["jaeger"]
    volume = next(volume for volume in jaeger["volumes"] if volume.endswith(":/etc/jaeger/config.yaml:ro"))
    assert (SHOP / volume.split(":")[0]).resolve() == SHOP / "compose" / "jaeger.yaml"
    assert jaeger["command"] == ["--config", "/etc/jaeger/config.yaml"]
    assert jaeger["environment"] == {"JAEGER_LISTEN_HOST": "0.0.0.0"}
    config = yaml.safe_load((SHOP / "compose" / "jaeger.yaml").read_text())
    defaults = {
        match["name"]: match["default"]
        for match in re.finditer(r"\$\{env:(?P<name>[A-Z_]+):-(?P<default>[^}]*)\}", yaml.safe_dump(config))
    }
    # Without the variables (as in compose), the standard ports: OTLP 4317/4318, the UI 16686, Zipkin 9411.
    assert {defaults[name] for name in ("JAEGER_OTLP_GRPC_PORT", "JAEGER_OTLP_HTTP_PORT")} == {"4317", "4318"}
    assert (defaults["JAEGER_QUERY_HTTP_PORT"], defaults["JAEGER_ZIPKIN_PORT"]) == ("16686", "9411")
    assert defaults["JAEGER_LISTEN_HOST"] == "127.0.0.1"  # outside a container: loopback only
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp", "zipkin"]
    assert config["extensions"]["jaeger_query"]["enable_tracing"] is False


@pytest.mark.parametrize("name", SHOP_SERVICES)
def test_each_shop_service_exports_to_jaeger_with_a_valid_configuration(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    environment = _environment(service)
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert environment["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert environment["OTEL_TRACES_EXPORTER"] == "otlp"
    assert environment["SHOP_HOST"] == "0.0.0.0"
    port = int(environment["SHOP_PORT"])
    assert _published(service) == {port: port}
    assert "jaeger" in service["depends_on"]
    # veil accepts the configuration (as `veil run` would check it before starting the program).
    settings = Settings.load(environ=environment)
    assert settings.exporters("traces") == ("otlp",)
    # The image is built from the repository root with the shop's Dockerfile.
    build = service["build"]
    assert (SHOP / build["context"] / build["dockerfile"]).resolve() == SHOP / "Dockerfile"


def test_each_service_adds_veil_its_own_way(compose: dict[str, Any]) -> None:
    services = compose["services"]
    commands = {name: services[name]["command"] for name in SHOP_SERVICES}
    assert commands["gateway"] == ["python", "-m", "examples.shop.gateway"]
    assert commands["inventory"] == ["opentelemetry-instrument", "python", "-m", "examples.shop.inventory"]
    assert commands["payments"][:4] == ["veil", "run", "--service-name", "payments"]
    assert commands["payments"][-4:] == ["--", "python", "-m", "examples.shop.payments"]
    for name, command in commands.items():
        module = command[command.index("-m") + 1]
        assert (SHOP.parents[1] / (module.replace(".", "/") + ".py")).is_file()
        assert module == f"examples.shop.{name}"
    assert "veil.configure(" in (SHOP / "gateway.py").read_text()
    names = {
        name: _environment(services[name]).get("OTEL_SERVICE_NAME")
        or commands[name][commands[name].index("--service-name") + 1]
        for name in SHOP_SERVICES
    }
    assert names == {name: name for name in SHOP_SERVICES}


def test_the_services_find_each_other(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ports = {name: int(_environment(services[name])["SHOP_PORT"]) for name in SHOP_SERVICES}
    for name in ("gateway", "inventory"):
        environment = _environment(services[name])
        for target in ("inventory", "payments"):
            url = environment[f"SHOP_{target.upper()}_URL"]
            assert (urlsplit(url).hostname, urlsplit(url).port) == (target, ports[target])
    assert set(services["gateway"]["depends_on"]) >= {"inventory", "payments"}
    assert "payments" in services["inventory"]["depends_on"]


def test_monitoring_mounts_exist_and_scrape_the_three_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "alertmanager"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (SHOP / source).exists(), f"{name} mounts {source}, which does not exist"
    prometheus = yaml.safe_load((SHOP / "compose" / "prometheus.yml").read_text())
    targets = {
        target: group["labels"]["service_name"]
        for job in prometheus["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    port = int(_environment(services["gateway"])["OTEL_EXPORTER_PROMETHEUS_PORT"])
    assert targets == {f"{name}:{port}": name for name in SHOP_SERVICES}
    mounted_rules = Path("/etc/prometheus/rules")
    for rule_file in prometheus["rule_files"]:
        assert (SHOP / "monitoring" / "rules" / Path(rule_file).relative_to(mounted_rules)).is_file()
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_zipkin_variant_switches_every_service_to_zipkin(compose: dict[str, Any]) -> None:
    override = _load("docker-compose.zipkin.yml")["services"]
    zipkin = override["zipkin"]
    assert zipkin["image"].startswith("openzipkin/zipkin:")
    assert _published(zipkin) == {9411: 9411}
    for name in SHOP_SERVICES:
        environment = {**_environment(compose["services"][name]), **_environment(override[name])}
        assert environment["OTEL_TRACES_EXPORTER"] == "zipkin"
        endpoint = urlsplit(environment["OTEL_EXPORTER_ZIPKIN_ENDPOINT"])
        assert (endpoint.hostname, endpoint.port, endpoint.path) == ("zipkin", 9411, "/api/v2/spans")
        assert Settings.load(environ=environment).exporters("traces") == ("zipkin",)
        assert "zipkin" in override[name]["depends_on"]


def test_the_dockerfile_copies_what_exists() -> None:
    root = SHOP.parents[1]
    sources = [
        part
        for line in (SHOP / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    assert sources and all((root / source).exists() for source in sources)
