"""The Resource veil attaches to every span, metric and log: who is emitting, where, with what.

Explicit settings (service name, version, environment) win over the same keys in OTEL_RESOURCE_ATTRIBUTES.
Nothing from the command line or the environment's values is recorded: command arguments carry secrets.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.semconv._incubating.attributes.host_attributes import HOST_ARCH, HOST_NAME
from opentelemetry.semconv._incubating.attributes.os_attributes import OS_TYPE
from opentelemetry.semconv._incubating.attributes.process_attributes import (
    PROCESS_EXECUTABLE_NAME,
    PROCESS_PID,
    PROCESS_RUNTIME_NAME,
    PROCESS_RUNTIME_VERSION,
)
from opentelemetry.semconv.attributes.container_attributes import CONTAINER_ID
from opentelemetry.semconv.attributes.deployment_attributes import DEPLOYMENT_ENVIRONMENT_NAME
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME, SERVICE_VERSION
from opentelemetry.semconv.attributes.telemetry_attributes import (
    TELEMETRY_DISTRO_NAME,
    TELEMETRY_DISTRO_VERSION,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
)

from veil import _sdk
from veil._version import __version__
from veil.settings import Settings

_CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def default_service_name() -> str:
    """`unknown_service:<executable name>`, as the resource semantic conventions require."""
    executable = os.path.basename(sys.executable) or "python"
    return f"unknown_service:{executable}"


def container_id(cgroup_path: str = "/proc/self/cgroup", mountinfo_path: str = "/proc/self/mountinfo") -> str | None:
    """The container id when running in a container (cgroup v1 paths, or cgroup v2 mount entries)."""
    for path in (cgroup_path, mountinfo_path):
        try:
            with open(path, encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if path == mountinfo_path and "/containers/" not in line and "/docker/" not in line:
                        continue
                    match = _CONTAINER_ID.search(line)
                    if match:
                        return match.group(1)
        except OSError:
            continue
    return None


def build_resource(settings: Settings) -> Resource:
    """The Resource for this process from validated settings."""
    attributes: dict[str, str | int] = {
        TELEMETRY_SDK_NAME: "opentelemetry",
        TELEMETRY_SDK_LANGUAGE: "python",
        TELEMETRY_SDK_VERSION: sdk_version,
        TELEMETRY_DISTRO_NAME: "veil",
        TELEMETRY_DISTRO_VERSION: __version__,
        HOST_NAME: socket.gethostname(),
        HOST_ARCH: platform.machine().lower(),
        OS_TYPE: sys.platform if sys.platform != "win32" else "windows",
        PROCESS_PID: os.getpid(),
        PROCESS_EXECUTABLE_NAME: os.path.basename(sys.executable),
        PROCESS_RUNTIME_NAME: sys.implementation.name,
        PROCESS_RUNTIME_VERSION: platform.python_version(),
    }
    found_container = container_id()
    if found_container:
        attributes[CONTAINER_ID] = found_container
    attributes.update(settings.resource_attributes)
    explicit = {
        SERVICE_NAME: settings.service_name,
        SERVICE_VERSION: settings.service_version,
        DEPLOYMENT_ENVIRONMENT_NAME: settings.environment,
    }
    attributes.update({key: value for key, value in explicit.items() if value is not None})
    attributes.setdefault(SERVICE_NAME, default_service_name())
    return Resource(attributes)


def refresh_process_id(resource: Resource) -> None:
    """Give `resource` the current process id, in place, after a fork.

    Every tracer, meter and logger of a provider shares its Resource object, so a forked worker (gunicorn
    --preload, multiprocessing) would otherwise report its parent's pid. Resources are immutable in the SDK's
    API; this updates the one attribute veil itself set, through the SDK's attribute container.
    """
    storage = _sdk.resource_attribute_storage(resource)
    if storage is not None and PROCESS_PID in storage:
        storage[PROCESS_PID] = os.getpid()
