"""SageMaker instance types per job kind, read from botocore's SageMaker service model.

The lists are the enums ``TrainingInstanceType``, ``ProcessingInstanceType`` and
``ProductionVariantInstanceType`` in ``botocore/data/sagemaker/2017-07-24/service-2.json``,
so they follow the installed botocore. The model is loaded once, on first use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any, Literal

InstanceKind = Literal["training", "processing", "hosting"]

INSTANCE_TYPE_FORM = re.compile(r"ml\.[a-z0-9][a-z0-9-]*\.[a-z0-9]+")

_ENUM_SHAPES: dict[InstanceKind, str] = {
    "training": "TrainingInstanceType",
    "processing": "ProcessingInstanceType",
    "hosting": "ProductionVariantInstanceType",
}

_KIND_NOUNS: dict[InstanceKind, str] = {
    "training": "training jobs",
    "processing": "processing jobs",
    "hosting": "endpoints",
}

EXAMPLE_INSTANCE_TYPES: dict[InstanceKind, str] = {
    "training": "ml.m5.xlarge",
    "processing": "ml.m5.xlarge",
    "hosting": "ml.m5.large",
}


@functools.cache
def _sagemaker_shapes() -> Mapping[str, Any] | None:
    """Load the SageMaker service model's shapes, or None when botocore is unavailable."""
    try:
        from botocore.exceptions import DataNotFoundError  # type: ignore[import-untyped]
        from botocore.loaders import create_loader  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        model = create_loader().load_service_model("sagemaker", "service-2")
    except DataNotFoundError:
        return None
    shapes: Mapping[str, Any] = model["shapes"]
    return shapes


def known_instance_types(kind: InstanceKind) -> frozenset[str] | None:
    """Return the instance types SageMaker offers for ``kind``, or None if botocore is missing."""
    shapes = _sagemaker_shapes()
    if shapes is None or _ENUM_SHAPES[kind] not in shapes:
        return None
    return frozenset(shapes[_ENUM_SHAPES[kind]].get("enum", ()))


def check_instance_type(value: str, kind: InstanceKind) -> tuple[str, str] | None:
    """Return (message, fix) when ``value`` is not an instance type for ``kind``, else None."""
    example = EXAMPLE_INSTANCE_TYPES[kind]
    if not INSTANCE_TYPE_FORM.fullmatch(value):
        candidate = "ml." + value.lower()
        suggestion = candidate if INSTANCE_TYPE_FORM.fullmatch(candidate) else example
        return (
            "not a SageMaker instance type",
            f'use an ml.* type such as "{suggestion}"',
        )

    known = known_instance_types(kind)
    if known is None:
        # NOTE: without botocore's service model only the ml.<family>.<size> form is checked.
        return None
    if value in known:
        return None

    noun = _KIND_NOUNS[kind]
    for other_kind in _ENUM_SHAPES:
        other_types = known_instance_types(other_kind)
        if other_kind != kind and other_types is not None and value in other_types:
            return (
                f"SageMaker offers this type for {_KIND_NOUNS[other_kind]} but not for {noun}",
                f"use a type that {noun} accept, such as {_suggest(value, known, example)}",
            )

    _, family, size = value.split(".")
    families = sorted({name.split(".")[1] for name in known})
    if family not in families:
        close = get_close_matches(family, families, n=3, cutoff=0.5)
        if close:
            listed = ", ".join(f'"ml.{name}.{size}"' for name in close)
            return (
                f'unknown instance family "{family}" for {noun}',
                f"use a listed family, e.g. {listed}",
            )
        return (
            f'unknown instance family "{family}" for {noun}',
            f"use one of these families: {', '.join(families)}",
        )

    sizes = sorted((name for name in known if name.split(".")[1] == family), key=_size_order)
    close = get_close_matches(value, sizes, n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return (
        f'instance family "{family}" has no size "{size}" for {noun}',
        f"{hint}Sizes offered: {', '.join(sizes)}",
    )


def _suggest(value: str, known: frozenset[str], example: str) -> str:
    close = get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    return f'"{close[0] if close else example}"'


_SMALL_SIZES = ("nano", "micro", "small", "medium", "large")


def _size_order(instance_type: str) -> tuple[int, str]:
    """Sort sizes from small to large: ..., large, xlarge, 2xlarge, ..., then the rest."""
    size = instance_type.split(".")[2]
    if size in _SMALL_SIZES:
        return (_SMALL_SIZES.index(size), size)
    match = re.fullmatch(r"(\d*)xlarge", size)
    if match:
        return (len(_SMALL_SIZES) + int(match.group(1) or 1), size)
    return (10_000, size)
