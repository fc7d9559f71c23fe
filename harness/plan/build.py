"""Build the pipeline plan: the ordered jobs of one run, each as a SageMaker API request.

The graph of the reference ranking pipeline is fixed; the configuration chooses which steps
run and fills in each request:

    prepare -> train -> predict -> evaluate -> condition -> register
                    \\-> explain ------------------------------/
                                                    \\-> package (only when the condition holds)

explain is optional: when it runs, register attaches its analysis.json to the model package.

Training and processing steps become CreateTrainingJob and CreateProcessingJob requests, in
exactly the shape the API takes. The condition keeps the shape of a pipeline definition's
ConditionStep (a JsonGet on the evaluation report), and register keeps the shape of a
CreateModelPackage request whose approval status the condition decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Config, StepConfig
from harness.errors import HarnessError
from harness.plan import images

# Every step of the reference pipeline, in graph order.
PIPELINE_STEPS = (
    "prepare",
    "train",
    "predict",
    "evaluate",
    "explain",
    "condition",
    "register",
    "package",
)

# The steps each step reads outputs from.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "train": ("prepare",),
    "predict": ("train", "prepare"),
    "evaluate": ("predict", "prepare"),
    "explain": ("train", "prepare"),
    "condition": ("evaluate",),
    "register": ("condition", "train", "evaluate"),
    "package": ("condition", "train", "prepare"),
}

# The outputs each step reads: input name -> (upstream step, output name). "dataset" is the
# raw data that harness uploads before the first job. Cache keys hash these inputs' digests.
READS: dict[str, dict[str, tuple[str, str]]] = {
    "prepare": {"raw": ("dataset", "raw")},
    "train": {"train": ("prepare", "train"), "validation": ("prepare", "validation")},
    "predict": {"model": ("train", "model"), "test": ("prepare", "test")},
    "evaluate": {
        "predictions": ("predict", "predictions"),
        "validation": ("prepare", "validation"),
        "schema": ("prepare", "schema"),
    },
    "explain": {
        "model": ("train", "model"),
        "test": ("prepare", "test"),
        "schema": ("prepare", "schema"),
    },
    "condition": {"evaluation": ("evaluate", "evaluation")},
    "register": {"model": ("train", "model"), "evaluation": ("evaluate", "evaluation")},
    "package": {"model": ("train", "model"), "schema": ("prepare", "schema")},
}

# Outputs a step reads only when their step is in the plan, in the layout of READS.
OPTIONAL_READS: dict[str, dict[str, tuple[str, str]]] = {
    "register": {"explainability": ("explain", "explain")},
}

SPARK_STEPS = frozenset({"prepare", "evaluate"})
PROCESSING_INPUT_ROOT = "/opt/ml/processing/input"
PROCESSING_OUTPUT_ROOT = "/opt/ml/processing/output"
CODE_LOCAL_PATH = f"{PROCESSING_INPUT_ROOT}/code"

# The property file that the condition reads, as a SageMaker PropertyFile names it.
EVALUATION_PROPERTY_FILE = "EvaluationReport"

# The explain step's file that register attaches as ModelMetrics.Explainability.Report.
EXPLAINABILITY_REPORT = "analysis.json"
# The container folder of a training job's TensorBoard logs (TensorBoardOutputConfig.LocalPath).
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"


class PlanError(HarnessError):
    """The configuration passed validation but does not form a runnable pipeline."""


@dataclass(frozen=True)
class CodeBundle:
    """The `steps/` folder shipped to every job, named by the hash of its content."""

    folder: Path
    digest: str
    files: tuple[Path, ...]

    def source_uri(self, bucket: str, pipeline: str) -> str:
        return f"s3://{bucket}/{pipeline}/code/{self.digest[:16]}/source/"

    def archive_uri(self, bucket: str, pipeline: str) -> str:
        return f"s3://{bucket}/{pipeline}/code/{self.digest[:16]}/sourcedir.tar.gz"


@dataclass
class PlannedJob:
    """One step of the run: its request and the S3 URIs of what it produces."""

    step: str
    kind: str  # processing | training | tuning | condition | register
    name: str
    depends_on: tuple[str, ...]
    request: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)
    # "if" for steps that run only when the condition holds, as a ConditionStep's if_steps.
    branch: str | None = None


@dataclass
class Plan:
    run_id: str
    pipeline: str
    code: CodeBundle
    dataset_uri: str
    dataset_local: Path | None
    dataset_digest: str | None
    jobs: list[PlannedJob]

    def evaluation_report_uri(self) -> str:
        """Return the S3 URI of evaluation.json, the file the condition reads."""
        return self.job("evaluate").outputs["evaluation"] + "evaluation.json"

    def reads(self, step: str) -> dict[str, tuple[str, str]]:
        """Return the outputs that `step` reads in this plan: READS, plus the OPTIONAL_READS
        whose upstream step is in the plan."""
        planned = {job.step for job in self.jobs}
        optional = {
            name: (upstream, output)
            for name, (upstream, output) in OPTIONAL_READS.get(step, {}).items()
            if upstream in planned
        }
        return {**READS[step], **optional}

    def job(self, step: str) -> PlannedJob:
        for job in self.jobs:
            if job.step == step:
                return job
        raise KeyError(step)


def hash_files(root: Path, files: list[Path]) -> str:
    """Hash file names (relative to root) and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def code_bundle(project_root: Path) -> CodeBundle:
    folder = project_root / "steps"
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    ]
    return CodeBundle(folder=folder, digest=hash_files(folder, files), files=tuple(sorted(files)))


def _dataset_location(config: Config) -> tuple[str, Path | None, str | None]:
    """Return the dataset's S3 prefix, its local folder and the digest of its files.

    An S3 dataset has no local folder, and its digest is computed from the object listing
    when the run starts.
    """
    dataset = config.pipeline.dataset
    if dataset.startswith("s3://"):
        return dataset.rstrip("/") + "/", None, None
    local = (config.project_root / dataset).resolve()
    files = sorted(p for p in local.rglob("*") if p.is_file())
    if not files:
        raise PlanError(
            f"[pipeline] dataset = {dataset!r}: the folder {local} contains no files. "
            "Fix: fetch the sample data with `python sample_data/fetch.py`, or point "
            "dataset at a folder of LETOR text files."
        )
    digest = hash_files(local, files)
    prefix = config.pipeline.output_prefix.rstrip("/")
    return f"{prefix}/input/raw/{digest[:16]}/", local, digest


def _script(step: StepConfig) -> str:
    """Return the entry point's path relative to the `steps/` folder."""
    parts = Path(step.entry_point).parts
    if parts[0] != "steps":
        raise PlanError(
            f"[{step.name}] entry_point = {step.entry_point!r}: the entry point must be inside "
            "steps/, which is shipped to the job as its code. Fix: move the script under steps/."
        )
    return Path(*parts[1:]).as_posix()


def _tuning_job(
    config: Config, training: PlannedJob, pipeline: str, run_id: str, output_path: str
) -> PlannedJob:
    """Return the train step as a hyperparameter tuning job over `training`'s request.

    The model's location is a placeholder until the tuning job picks its best training job.
    The local runner then points predict, register and package at that job's model.
    """
    from harness.plan.tuning import tuning_job_request

    # At most 32 characters: 12 of the pipeline name, "-tune-" and the 14-digit run id.
    name = f"{pipeline[:12].rstrip('-')}-tune-{run_id}"
    request = tuning_job_request(config, training.request, name)
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    if "sagemaker_job_name" in static:
        # The training jobs belong to the tuning job, whose name they carry.
        static["sagemaker_job_name"] = name
    return PlannedJob(
        "train",
        "tuning",
        name,
        training.depends_on,
        request,
        {"model": f"{output_path}/{name}/best-training-job/output/model.tar.gz"},
    )


def _processing_input(name: str, uri: str, distribution: str = "FullyReplicated") -> dict[str, Any]:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": f"{PROCESSING_INPUT_ROOT}/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": distribution,
        },
    }


def _processing_request(
    config: Config,
    step: StepConfig,
    job_name: str,
    code_uri: str,
    inputs: list[dict[str, Any]],
    outputs: dict[str, str],
    wiring_arguments: list[str],
) -> dict[str, Any]:
    region = config.session.region
    framework_version = (config.steps.get("train") or step).framework_version or "2.18"
    if step.name in SPARK_STEPS:
        image = images.spark_processing_image(region)
        launcher = "smspark-submit"
    else:
        image = images.tensorflow_training_image(
            region, framework_version, "py310", step.instance_type
        )
        launcher = "python3"
    arguments = list(wiring_arguments)
    for key, value in step.arguments.items():
        arguments += [f"--{key}", value]
    return {
        "ProcessingJobName": job_name,
        "ProcessingInputs": [*inputs, _processing_input("code", code_uri)],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": name,
                    "AppManaged": False,
                    "S3Output": {
                        "S3Uri": uri,
                        "LocalPath": f"{PROCESSING_OUTPUT_ROOT}/{name}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
                for name, uri in outputs.items()
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": step.instance_count,
                "InstanceType": step.instance_type,
                "VolumeSizeInGB": step.volume_size_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": step.max_runtime_seconds},
        "AppSpecification": {
            "ImageUri": image,
            "ContainerEntrypoint": [launcher, f"{CODE_LOCAL_PATH}/{_script(step)}"],
            "ContainerArguments": arguments,
        },
        "Environment": dict(step.environment),
        "RoleArn": config.session.role_arn,
    }


def mpi_hyperparameters(step: StepConfig) -> dict[str, str]:
    """Return the framework hyperparameters of SageMaker's MPI distribution; {} for one rank.

    They are the hyperparameters that the SageMaker Python SDK sets for an MPI distribution
    and that the sagemaker-training toolkit reads. The cloud target maps them to
    `ModelTrainer(distributed=MPI(...))`, and the local target starts that many Horovod ranks.
    """
    if step.ranks == 1:
        return {}
    return {
        "sagemaker_mpi_enabled": "true",
        "sagemaker_mpi_num_of_processes_per_host": str(step.processes_per_host),
        "sagemaker_mpi_custom_mpi_options": step.custom_mpi_options,
    }


def _training_request(
    config: Config,
    step: StepConfig,
    job_name: str,
    archive_uri: str,
    channels: dict[str, str],
    output_path: str,
) -> dict[str, Any]:
    framework_version = step.framework_version or "2.18"
    py_version = step.py_version or "py310"
    hyperparameters = dict(step.hyperparameters)
    profile_steps = config.section_values(step.name).get("profile_steps", "")
    if profile_steps:
        # The train step traces these steps into TensorBoardOutputConfig's LocalPath.
        hyperparameters["profile_steps"] = profile_steps
    # The framework parameters with which SageMaker's TensorFlow containers find the code.
    hyperparameters.update(
        {
            "sagemaker_program": _script(step),
            "sagemaker_submit_directory": archive_uri,
            "sagemaker_region": config.session.region,
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": job_name,
        }
    )
    hyperparameters.update(mpi_hyperparameters(step))
    request = {
        "TrainingJobName": job_name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {
            "TrainingImage": images.tensorflow_training_image(
                config.session.region, framework_version, py_version, step.instance_type
            ),
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in step.metric_definitions],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": config.session.role_arn,
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "application/x-parquet",
                "InputMode": "File",
            }
            for name, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": output_path},
        "ResourceConfig": {
            "InstanceType": step.instance_type,
            "InstanceCount": step.instance_count,
            "VolumeSizeInGB": step.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": step.max_runtime_seconds},
        "Environment": dict(step.environment),
    }
    if profile_steps:
        request.update(profiler_settings(output_path))
    return request


def profiler_settings(output_path: str) -> dict[str, Any]:
    """Return the CreateTrainingJob fields of a profiled training job.

    TensorBoardOutputConfig uploads the job's TensorBoard folder, where the train step writes
    its TensorFlow profiler trace and step_time.json; ProfilerConfig turns on SageMaker's
    system monitoring (CPU, GPU, memory) of the instances.
    """
    prefix = output_path.rstrip("/")
    return {
        "TensorBoardOutputConfig": {
            "LocalPath": TENSORBOARD_LOCAL_PATH,
            "S3OutputPath": f"{prefix}/tensorboard",
        },
        "ProfilerConfig": {
            "S3OutputPath": f"{prefix}/profiler",
            "ProfilingIntervalInMilliseconds": 500,
            "DisableProfiler": False,
        },
    }


def build_plan(config: Config, run_id: str) -> Plan:
    """Turn a validated configuration into the jobs of one run, in graph order."""
    selected = [s for s in PIPELINE_STEPS if s in config.pipeline.steps]
    for step in selected:
        missing = [u for u in UPSTREAM[step] if u not in selected]
        if missing:
            raise PlanError(
                f"[pipeline] steps: {step!r} needs the output of {', '.join(missing)}, which "
                f"the list leaves out. Fix: add {', '.join(missing)} to [pipeline] steps."
            )
    pipeline = config.pipeline.name
    bundle = code_bundle(config.project_root)
    bucket = config.session.bucket
    code_uri = bundle.source_uri(bucket, pipeline)
    archive_uri = bundle.archive_uri(bucket, pipeline)
    dataset_uri, dataset_local, dataset_digest = _dataset_location(config)
    run_prefix = f"{config.pipeline.output_prefix.rstrip('/')}/runs/{run_id}"

    def job_name(step: str) -> str:
        return f"{pipeline}-{step}-{run_id}"

    def out(step: str, name: str) -> str:
        return f"{run_prefix}/{step}/{name}/"

    jobs: dict[str, PlannedJob] = {}

    if "prepare" in selected:
        step = config.steps["prepare"]
        outputs = {name: out("prepare", name) for name in ("train", "validation", "test", "schema")}
        jobs["prepare"] = PlannedJob(
            "prepare",
            "processing",
            job_name("prepare"),
            (),
            _processing_request(
                config,
                step,
                job_name("prepare"),
                code_uri,
                [_processing_input("raw", dataset_uri)],
                outputs,
                [
                    "--input-dir",
                    f"{PROCESSING_INPUT_ROOT}/raw",
                    "--output-dir",
                    PROCESSING_OUTPUT_ROOT,
                ],
            ),
            outputs,
        )

    if "train" in selected:
        step = config.steps["train"]
        prepared = jobs["prepare"].outputs
        output_path = f"{run_prefix}/train"
        name = job_name("train")
        jobs["train"] = PlannedJob(
            "train",
            "training",
            name,
            ("prepare",),
            _training_request(
                config,
                step,
                name,
                archive_uri,
                {"train": prepared["train"], "validation": prepared["validation"]},
                output_path,
            ),
            {"model": f"{output_path}/{name}/output/model.tar.gz"},
        )
        if config.tuning is not None:
            jobs["train"] = _tuning_job(config, jobs["train"], pipeline, run_id, output_path)

    if "predict" in selected:
        step = config.steps["predict"]
        outputs = {"predictions": out("predict", "predictions")}
        jobs["predict"] = PlannedJob(
            "predict",
            "processing",
            job_name("predict"),
            ("train", "prepare"),
            _processing_request(
                config,
                step,
                job_name("predict"),
                code_uri,
                [
                    _processing_input("model", jobs["train"].outputs["model"]),
                    # Each instance scores about 1/N of the test files.
                    _processing_input("test", jobs["prepare"].outputs["test"], "ShardedByS3Key"),
                ],
                outputs,
                [
                    "--model-dir",
                    f"{PROCESSING_INPUT_ROOT}/model",
                    "--input-dir",
                    f"{PROCESSING_INPUT_ROOT}/test",
                    "--output-dir",
                    f"{PROCESSING_OUTPUT_ROOT}/predictions",
                ],
            ),
            outputs,
        )

    if "evaluate" in selected:
        step = config.steps["evaluate"]
        outputs = {"evaluation": out("evaluate", "evaluation")}
        jobs["evaluate"] = PlannedJob(
            "evaluate",
            "processing",
            job_name("evaluate"),
            ("predict", "prepare"),
            _processing_request(
                config,
                step,
                job_name("evaluate"),
                code_uri,
                [
                    _processing_input("predictions", jobs["predict"].outputs["predictions"]),
                    _processing_input("validation", jobs["prepare"].outputs["validation"]),
                    _processing_input("schema", jobs["prepare"].outputs["schema"]),
                ],
                outputs,
                [
                    "--predictions-dir",
                    f"{PROCESSING_INPUT_ROOT}/predictions",
                    "--validation-dir",
                    f"{PROCESSING_INPUT_ROOT}/validation",
                    "--schema-dir",
                    f"{PROCESSING_INPUT_ROOT}/schema",
                    "--output-dir",
                    f"{PROCESSING_OUTPUT_ROOT}/evaluation",
                ],
            ),
            outputs,
        )

    if "explain" in selected:
        step = config.steps["explain"]
        outputs = {"explain": out("explain", "explain")}
        # NOTE: SageMaker's TensorFlow images may not include shap, which explain.py imports,
        # so a cloud run may need an image or requirements that add it.
        jobs["explain"] = PlannedJob(
            "explain",
            "processing",
            job_name("explain"),
            ("train", "prepare"),
            _processing_request(
                config,
                step,
                job_name("explain"),
                code_uri,
                [
                    _processing_input("model", jobs["train"].outputs["model"]),
                    # Every instance reads the whole split: explain draws its own sample of it.
                    _processing_input("test", jobs["prepare"].outputs["test"]),
                    _processing_input("schema", jobs["prepare"].outputs["schema"]),
                ],
                outputs,
                [
                    "--model-dir",
                    f"{PROCESSING_INPUT_ROOT}/model",
                    "--input-dir",
                    f"{PROCESSING_INPUT_ROOT}/test",
                    "--schema-dir",
                    f"{PROCESSING_INPUT_ROOT}/schema",
                    "--output-dir",
                    f"{PROCESSING_OUTPUT_ROOT}/explain",
                ],
            ),
            outputs,
        )

    if "condition" in selected:
        condition = config.condition
        assert condition is not None
        jobs["condition"] = PlannedJob(
            "condition",
            "condition",
            f"{pipeline}-condition",
            ("evaluate",),
            {
                "Type": condition.comparison,
                "LeftValue": {
                    "Std:JsonGet": {
                        "PropertyFile": EVALUATION_PROPERTY_FILE,
                        "Path": condition.json_path,
                    }
                },
                "RightValue": condition.threshold,
                "Metric": condition.metric,
            },
        )

    if "register" in selected:
        register = config.register
        assert register is not None
        train = config.steps["train"]
        framework_version = train.framework_version or "2.18"
        jobs["register"] = PlannedJob(
            "register",
            "register",
            register.model_package_group,
            ("condition", "train", "evaluate"),
            {
                "ModelPackageGroupName": register.model_package_group,
                "ModelPackageDescription": f"{pipeline} run {run_id}",
                # Set when the condition has been evaluated: Approved or Rejected.
                "ModelApprovalStatus": None,
                "InferenceSpecification": {
                    "Containers": [
                        {
                            "Image": images.tensorflow_inference_image(
                                config.session.region,
                                framework_version,
                                register.inference_instance_type,
                            ),
                            "ModelDataUrl": jobs["train"].outputs["model"],
                            "Framework": "TENSORFLOW",
                            "FrameworkVersion": framework_version,
                        }
                    ],
                    "SupportedContentTypes": [register.content_type],
                    "SupportedResponseMIMETypes": ["application/json"],
                    "SupportedRealtimeInferenceInstanceTypes": [register.inference_instance_type],
                    "SupportedTransformInstanceTypes": [config.steps["predict"].instance_type]
                    if "predict" in config.steps
                    else [register.inference_instance_type],
                },
                "ModelMetrics": {
                    "ModelQuality": {
                        "Statistics": {
                            "ContentType": "application/json",
                            "S3Uri": jobs["evaluate"].outputs["evaluation"] + "evaluation.json",
                        }
                    }
                },
                "CustomerMetadataProperties": {"pipeline": pipeline, "run_id": run_id},
            },
        )
        if "explain" in jobs:
            # Attached whatever the condition decides, so a Rejected model keeps its report too.
            jobs["register"].depends_on += ("explain",)
            jobs["register"].request["ModelMetrics"]["Explainability"] = {
                "Report": {
                    "ContentType": "application/json",
                    "S3Uri": jobs["explain"].outputs["explain"] + EXPLAINABILITY_REPORT,
                }
            }

    if "package" in selected:
        step = config.steps["package"]
        outputs = {"package": out("package", "package")}
        jobs["package"] = PlannedJob(
            "package",
            "processing",
            job_name("package"),
            ("condition", "train", "prepare"),
            _processing_request(
                config,
                step,
                job_name("package"),
                code_uri,
                [
                    _processing_input("model", jobs["train"].outputs["model"]),
                    _processing_input("schema", jobs["prepare"].outputs["schema"]),
                ],
                outputs,
                [
                    "--model-dir",
                    f"{PROCESSING_INPUT_ROOT}/model",
                    "--schema-dir",
                    f"{PROCESSING_INPUT_ROOT}/schema",
                    "--output-dir",
                    f"{PROCESSING_OUTPUT_ROOT}/package",
                ],
            ),
            outputs,
            branch="if",
        )

    return Plan(
        run_id=run_id,
        pipeline=pipeline,
        code=bundle,
        dataset_uri=dataset_uri,
        dataset_local=dataset_local,
        dataset_digest=dataset_digest,
        jobs=[jobs[s] for s in PIPELINE_STEPS if s in jobs],
    )
