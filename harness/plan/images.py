"""Container image URIs recorded in job requests.

The local target runs step code under this Python and never pulls an image. The URIs are
recorded so that each request is the one the cloud would receive: they come from the image
tables that the SageMaker Python SDK ships (``sagemaker/core/image_uri_config/*.json``, the
data behind ``sagemaker.core.image_uris.retrieve``), read as JSON so that planning does not
pay the SDK's import time. The accounts differ by region, and GPU instances get GPU images.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SPARK_VERSION = "3.5"
SPARK_PY_VERSION = "py39"
# The container version in the image URIs of the SDK's PySparkProcessor.
SPARK_CONTAINER_VERSION = "v1"

# Instance families with NVIDIA GPUs, which run the GPU build of the framework images.
_GPU_FAMILIES = ("ml.p", "ml.g")


class ImageError(HarnessError):
    """No SageMaker image exists for the framework, version or region asked for."""


# Inside lenient(), a missing image gives a placeholder URI instead of an ImageError.
_LENIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("lenient", default=False)
UNAVAILABLE = "unavailable-image"


@contextlib.contextmanager
def lenient() -> Iterator[None]:
    """Plan with placeholder URIs for missing images, for a check that reports them itself."""
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)


def _or_placeholder(resolve: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(resolve)
    def wrapper(*args: str, **kwargs: str) -> str:
        try:
            return resolve(*args, **kwargs)
        except ImageError:
            if _LENIENT.get():
                return UNAVAILABLE
            raise

    return wrapper


@functools.cache
def _image_table(framework: str) -> dict[str, Any]:
    spec = importlib.util.find_spec("sagemaker")
    if spec is None or not spec.submodule_search_locations:
        raise ImageError(
            "The SageMaker Python SDK is not installed, and its image tables name the "
            "container images. Fix: pip install -e . in the project's environment."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "core" / "image_uri_config"
    return json.loads((folder / f"{framework}.json").read_text())


def processor_of(instance_type: str) -> str:
    """Return "gpu" for an instance type with GPUs, else "cpu"."""
    return "gpu" if instance_type.startswith(_GPU_FAMILIES) else "cpu"


def _version_entry(framework: str, scope: str, version: str) -> tuple[str, dict[str, Any]]:
    table = _image_table(framework)[scope]
    full = table.get("version_aliases", {}).get(version, version)
    versions = table["versions"]
    if full not in versions:
        known = ", ".join(table.get("version_aliases", {}) or versions)
        raise ImageError(
            f"no SageMaker {framework} {scope} image has version {version!r}. "
            f"Fix: use one of {known}."
        )
    return full, versions[full]


def _registry(framework: str, scope: str, version: str, region: str) -> tuple[str, str]:
    _, entry = _version_entry(framework, scope, version)
    account = entry["registries"].get(region)
    if account is None:
        raise ImageError(
            f"SageMaker publishes no {framework} {version} {scope} image in region {region!r}. "
            f"Fix: use a region where it exists, for example {sorted(entry['registries'])[0]}."
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}", entry["repository"]


@_or_placeholder
def tensorflow_training_image(
    region: str, framework_version: str, py_version: str, instance_type: str = "ml.m5.xlarge"
) -> str:
    _, entry = _version_entry("tensorflow", "training", framework_version)
    if py_version not in entry.get("py_versions", [py_version]):
        raise ImageError(
            f"the TensorFlow {framework_version} training image has no {py_version} build. "
            f"Fix: use py_version = {entry['py_versions'][0]}."
        )
    host, repository = _registry("tensorflow", "training", framework_version, region)
    return f"{host}/{repository}:{framework_version}-{processor_of(instance_type)}-{py_version}"


@_or_placeholder
def tensorflow_inference_image(
    region: str, framework_version: str, instance_type: str = "ml.m5.large"
) -> str:
    host, repository = _registry("tensorflow", "inference", framework_version, region)
    return f"{host}/{repository}:{framework_version}-{processor_of(instance_type)}"


@_or_placeholder
def spark_processing_image(region: str) -> str:
    host, repository = _registry("spark", "processing", SPARK_VERSION, region)
    return f"{host}/{repository}:{SPARK_VERSION}-cpu-{SPARK_PY_VERSION}-{SPARK_CONTAINER_VERSION}"
