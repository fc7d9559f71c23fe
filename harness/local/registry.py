"""Look-ups in the local model registry: model package versions and the reports attached to them."""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError

from harness.errors import HarnessError
from harness.local.embedded import EmbeddedAWS

# A version as `harness models` prints it: "3" or "<model package group>/3".
_VERSION = re.compile(r"(?:(?P<group>[A-Za-z0-9-]+)/)?(?P<version>\d+)")


def parse_version(text: str, default_group: str | None) -> tuple[str, int]:
    """Return (model package group, version) of "3" or "ltr-ranking/3".

    Raises:
        HarnessError: the text is neither form, or it names no group and there is no default.
    """
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise HarnessError(
            f"--compare {text}: not a model package version. Fix: pass a version number such "
            "as 3, or <model package group>/<version> as `harness models` lists them."
        )
    group = match.group("group") or default_group
    if group is None:
        raise HarnessError(
            f"--compare {text}: no model package group, because the configuration has no "
            "[register] model_package_group. Fix: pass <model package group>/<version>."
        )
    return group, int(match.group("version"))


def list_model_packages(aws: EmbeddedAWS, group: str) -> list[dict[str, Any]]:
    """Return the summaries of every model package version in `group`, oldest first."""
    summaries: list[dict[str, Any]] = []
    paginator = aws.sagemaker.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=group):
        summaries += page["ModelPackageSummaryList"]
    return sorted(summaries, key=lambda summary: summary.get("ModelPackageVersion", 0))


def find_model_package(aws: EmbeddedAWS, group: str, version: int) -> dict[str, Any]:
    """Return DescribeModelPackage of one version of `group`.

    Raises:
        HarnessError: the group or the version is not in the registry.
    """
    summaries = list_model_packages(aws, group)
    versions = [summary.get("ModelPackageVersion") for summary in summaries]
    if not summaries:
        raise HarnessError(
            f"model package {group}/{version} not found: the registry has no version in the "
            f"group {group}. Fix: run `harness models` to list the registered versions."
        )
    for summary in summaries:
        if summary.get("ModelPackageVersion") == version:
            package = aws.sagemaker.describe_model_package(
                ModelPackageName=summary["ModelPackageArn"]
            )
            package.pop("ResponseMetadata", None)
            return package
    listed = ", ".join(str(number) for number in versions)
    noun = "version" if len(versions) == 1 else "versions"
    raise HarnessError(
        f"model package {group}/{version} not found: the group {group} has {noun} {listed}. "
        "Fix: pass a version it has; `harness models` lists them with their runs."
    )


def explainability_report_uri(package: dict[str, Any]) -> str | None:
    """Return the S3 URI of ModelMetrics.Explainability.Report, or None when it has none."""
    report = package.get("ModelMetrics", {}).get("Explainability", {}).get("Report", {})
    return report.get("S3Uri") or None


def read_explainability_report(
    aws: EmbeddedAWS, group: str, version: int
) -> tuple[dict[str, Any], str]:
    """Return the analysis.json attached to one version as its explainability report, and its URI.

    Raises:
        HarnessError: the version is not found, has no explainability report, or its report
            cannot be read or is not JSON.
    """
    package = find_model_package(aws, group, version)
    name = f"{group}/{version}"
    uri = explainability_report_uri(package)
    if uri is None:
        run_id = package.get("CustomerMetadataProperties", {}).get("run_id", "")
        registered_by = f"run {run_id}" if run_id else "the run that registered it"
        raise HarnessError(
            f"model package {name} has no explainability report: {registered_by} did not "
            "include the explain step. Fix: compare versions registered by runs with explain "
            "in [pipeline] steps, or run the pipeline again with explain to register a new "
            "version of that model."
        )
    try:
        return json.loads(aws.get_bytes(uri)), uri
    except ClientError as error:
        reason = error.response.get("Error", {}).get("Message", str(error))
        raise HarnessError(
            f"cannot read the explainability report of model package {name} at {uri}: "
            f"{reason}. Fix: run the pipeline again to register a new version with its report."
        ) from error
    except json.JSONDecodeError as error:
        raise HarnessError(
            f"the explainability report of model package {name} at {uri} is not JSON: "
            f"{error}. Fix: run the pipeline again to register a new version with its report."
        ) from error
