"""The plan as the cloud target runs it: the local plan with content-addressed outputs.

SageMaker's step cache reuses a step's earlier run when its arguments are the same. If every
execution wrote to the same prefix, a cached step could point at outputs that a later,
different execution overwrote. A prefix per execution would make every argument new, so
nothing would ever be cached. Each job therefore writes under a prefix named by the digest of
its own request, in which upstream outputs appear by their own digested prefixes:

    {output_prefix}/pipeline/{step}/{digest of the request}/{output name}/

Unchanged code, configuration and data give the same arguments, so the cache stays valid,
and a change to one step changes the prefixes of everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.config import Config
from harness.plan.build import Plan, build_plan

# The run id of the cloud plan's job names. SageMaker names each execution's jobs itself, so
# the names in the plan only label the steps and must not change between compilations.
CLOUD_RUN_ID = "pipeline"


def cloud_plan(config: Config) -> Plan:
    """Return the plan of a pipeline execution, its outputs under content-addressed prefixes."""
    plan = build_plan(config, CLOUD_RUN_ID)
    prefix = config.pipeline.output_prefix.rstrip("/")
    run_prefix = f"{prefix}/runs/{CLOUD_RUN_ID}"
    moved: dict[str, str] = {}
    for job in plan.jobs:
        job.request = _replace_prefixes(job.request, moved)
        digest = request_digest(job.request)
        base = f"{prefix}/pipeline/{job.step}/{digest[:16]}"
        if job.kind == "processing":
            for output in job.request["ProcessingOutputConfig"]["Outputs"]:
                moved[output["S3Output"]["S3Uri"]] = f"{base}/{output['OutputName']}/"
        elif job.kind in ("training", "tuning"):
            moved[f"{run_prefix}/train"] = base
        job.request = _replace_prefixes(job.request, moved)
        job.outputs = {name: _moved(uri, moved) for name, uri in job.outputs.items()}
    return plan


def request_digest(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _moved(value: str, moved: dict[str, str]) -> str:
    # The longest matching prefix is replaced first, so a shorter one never cuts into it.
    for old in sorted(moved, key=len, reverse=True):
        if value.startswith(old):
            return moved[old] + value[len(old) :]
    return value


def _replace_prefixes(value: Any, moved: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _moved(value, moved)
    if isinstance(value, dict):
        return {key: _replace_prefixes(item, moved) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_prefixes(item, moved) for item in value]
    return value
