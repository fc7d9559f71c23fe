"""Compile the cloud plan into a SageMaker Pipeline with the SageMaker Python SDK v3.

Each job of the plan becomes the SDK step that issues the same request:

- prepare, evaluate: ProcessingStep on the Spark 3.5 processing image, started with
  smspark-submit as PySparkProcessor starts it. evaluate carries the PropertyFile
  ``EvaluationReport`` that the condition reads.
- train: TrainingStep of a ModelTrainer on the TensorFlow training image. With [tuning], it is a
  TuningStep of a HyperparameterTuner with the same strategy, ranges, limits and metric
  definitions, and its best training job's model feeds the steps downstream.
- predict, explain, package: ProcessingStep on the TensorFlow image (predict's test input is
  ShardedByS3Key, one share per instance).
- condition: ConditionStep with a JsonGet on the evaluation report against the pipeline
  parameter ``Threshold``. register is a ModelStep of ModelBuilder.register, Approved in the
  condition's if branch and Rejected in its else branch. package runs in the if branch.

NOTE: prepare and evaluate use the SDK's generic Processor with the image and command that
PySparkProcessor would use, not PySparkProcessor itself: PySparkProcessor ships only the entry
script as the job's code, and the steps import `steps/common` from the folder beside it, which
the local target and this compiler both ship as the `code` input.

Training jobs run in SageMaker's TensorFlow container exactly as the local target runs them:
the container's toolkit reads `sagemaker_program` and `sagemaker_submit_directory` from the
hyperparameters, so ModelTrainer gets no SourceCode of its own. For the same reason, MPI
distribution is the `sagemaker_mpi_*` hyperparameters of the plan, with which the container
starts the ranks under mpirun, as the SDK v2's `distribution={"mpi": ...}` did. ModelTrainer's
own `distributed=MPI(...)` runs the script through the SDK's driver scripts instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.config import Config
from harness.plan.build import (
    EVALUATION_PROPERTY_FILE,
    Plan,
    PlannedJob,
)

THRESHOLD_PARAMETER = "Threshold"


def pipeline_parameters(config: Config) -> dict[str, str]:
    """Return the name and type of each parameter of the compiled pipeline."""
    return {THRESHOLD_PARAMETER: "Float"} if config.condition is not None else {}


@dataclass(frozen=True)
class CompiledStep:
    """One step of the pipeline as `harness promote --dry-run` summarises it."""

    name: str
    kind: str
    image: str
    instance_type: str
    instance_count: int
    branch: str = ""


@dataclass
class CompiledPipeline:
    name: str
    pipeline: Any  # sagemaker.mlops.workflow.pipeline.Pipeline
    definition: dict[str, Any]
    steps: list[CompiledStep]

    def definition_json(self) -> str:
        return json.dumps(self.definition, indent=2, sort_keys=False) + "\n"


def compile_pipeline(config: Config, plan: Plan, session: Any) -> CompiledPipeline:
    """Return the SDK v3 Pipeline of `plan`. `session` is a PipelineSession."""
    compiler = _Compiler(config, plan, session)
    return compiler.compile()


class _Compiler:
    def __init__(self, config: Config, plan: Plan, session: Any) -> None:
        self.config = config
        self.plan = plan
        self.session = session
        self.role = config.session.role_arn
        self.steps: dict[str, Any] = {}
        self.summary: list[CompiledStep] = []
        # S3 URI of each output -> (step, output name), to wire inputs to step properties.
        self.producers: dict[str, tuple[str, str]] = {}
        for job in plan.jobs:
            for name, uri in job.outputs.items():
                self.producers[uri] = (job.step, name)
        self.cache = self._cache_config()

    def compile(self) -> CompiledPipeline:
        from sagemaker.core.workflow.parameters import ParameterFloat
        from sagemaker.mlops.workflow.pipeline import Pipeline

        parameters = []
        top_level: list[Any] = []
        for job in self.plan.jobs:
            if job.kind == "processing":
                step = self._processing_step(job)
            elif job.kind == "training":
                step = self._training_step(job)
            elif job.kind == "tuning":
                step = self._tuning_step(job)
            else:
                continue
            self.steps[job.step] = step
            if job.branch is None:
                top_level.append(step)

        if any(job.kind == "condition" for job in self.plan.jobs):
            assert self.config.condition is not None
            threshold = ParameterFloat(
                name=THRESHOLD_PARAMETER, default_value=self.config.condition.threshold
            )
            parameters.append(threshold)
            top_level.append(self._condition_step(threshold))

        pipeline = Pipeline(
            name=self.plan.pipeline,
            parameters=parameters,
            steps=top_level,
            sagemaker_session=self.session,
        )
        definition = json.loads(pipeline.definition())
        return CompiledPipeline(self.plan.pipeline, pipeline, definition, self.summary)

    def _cache_config(self) -> Any:
        from sagemaker.mlops.workflow.steps import CacheConfig

        expiry = self.config.section_values("cloud").get("cache_expire_after", "P30D")
        if expiry == "off":
            return CacheConfig(enable_caching=False)
        return CacheConfig(enable_caching=True, expire_after=expiry)

    # Inputs and outputs.

    def _source(self, uri: str) -> Any:
        """Return `uri`, or the property of the upstream step that produces it."""
        producer = self.producers.get(uri)
        if producer is None:
            return uri
        step_name, output = producer
        upstream = self.steps[step_name]
        kind = self.plan.job(step_name).kind
        if kind == "training":
            return upstream.properties.ModelArtifacts.S3ModelArtifacts
        if kind == "tuning":
            bucket, key = self._training_output_path(self.plan.job(step_name))
            return upstream.get_top_model_s3_uri(top_k=0, s3_bucket=bucket, prefix=key)
        return upstream.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri

    @staticmethod
    def _training_output_path(job: PlannedJob) -> tuple[str, str]:
        """Return the bucket and key prefix of a training or tuning job's S3OutputPath."""
        request = job.request.get("TrainingJobDefinition", job.request)
        path = request["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://").rstrip("/")
        bucket, _, key = path.partition("/")
        return bucket, key

    def _processing_step(self, job: PlannedJob) -> Any:
        from sagemaker.core.processing import Processor
        from sagemaker.core.shapes import (
            ProcessingInput,
            ProcessingOutput,
            ProcessingS3Input,
            ProcessingS3Output,
        )
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.steps import ProcessingStep

        request = job.request
        cluster = request["ProcessingResources"]["ClusterConfig"]
        app = request["AppSpecification"]
        processor = Processor(
            role=self.role,
            image_uri=app["ImageUri"],
            instance_count=cluster["InstanceCount"],
            instance_type=cluster["InstanceType"],
            volume_size_in_gb=cluster["VolumeSizeInGB"],
            max_runtime_in_seconds=request["StoppingCondition"]["MaxRuntimeInSeconds"],
            entrypoint=list(app["ContainerEntrypoint"]),
            env=dict(request["Environment"]) or None,
            base_job_name=f"{self.plan.pipeline}-{job.step}"[:32],
            sagemaker_session=self.session,
        )
        inputs = [
            ProcessingInput(
                input_name=item["InputName"],
                app_managed=item.get("AppManaged", False),
                s3_input=ProcessingS3Input(
                    s3_uri=self._source(item["S3Input"]["S3Uri"]),
                    local_path=item["S3Input"]["LocalPath"],
                    s3_data_type=item["S3Input"]["S3DataType"],
                    s3_input_mode=item["S3Input"]["S3InputMode"],
                    s3_data_distribution_type=item["S3Input"]["S3DataDistributionType"],
                ),
            )
            for item in request["ProcessingInputs"]
        ]
        outputs = [
            ProcessingOutput(
                output_name=item["OutputName"],
                app_managed=item.get("AppManaged", False),
                s3_output=ProcessingS3Output(
                    s3_uri=item["S3Output"]["S3Uri"],
                    local_path=item["S3Output"]["LocalPath"],
                    s3_upload_mode=item["S3Output"]["S3UploadMode"],
                ),
            )
            for item in request["ProcessingOutputConfig"]["Outputs"]
        ]
        step_args = processor.run(
            inputs=inputs, outputs=outputs, arguments=list(app["ContainerArguments"]) or None
        )
        property_files = []
        if job.step == "evaluate":
            property_files.append(
                PropertyFile(
                    name=EVALUATION_PROPERTY_FILE,
                    output_name="evaluation",
                    path="evaluation.json",
                )
            )
        step = ProcessingStep(
            name=job.step,
            step_args=step_args,
            property_files=property_files or None,
            cache_config=self.cache,
        )
        self._summarise(job.step, "Processing", app["ImageUri"], cluster, job.branch)
        return step

    def _model_trainer(self, request: dict[str, Any], static: dict[str, str]) -> Any:
        from sagemaker.core.shapes import MetricDefinition
        from sagemaker.core.training.configs import (
            Compute,
            InputData,
            OutputDataConfig,
            StoppingCondition,
        )
        from sagemaker.train.model_trainer import ModelTrainer

        resources = request["ResourceConfig"]
        algorithm = request["AlgorithmSpecification"]
        trainer = ModelTrainer(
            training_image=algorithm["TrainingImage"],
            training_input_mode=algorithm["TrainingInputMode"],
            role=self.role,
            sagemaker_session=self.session,
            base_job_name=f"{self.plan.pipeline}-train"[:32],
            compute=Compute(
                instance_type=resources["InstanceType"],
                instance_count=resources["InstanceCount"],
                volume_size_in_gb=resources["VolumeSizeInGB"],
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=request["StoppingCondition"]["MaxRuntimeInSeconds"]
            ),
            output_data_config=OutputDataConfig(
                s3_output_path=request["OutputDataConfig"]["S3OutputPath"]
            ),
            hyperparameters=dict(static),
            environment=dict(request.get("Environment") or {}),
        )
        definitions = [
            MetricDefinition(name=item["Name"], regex=item["Regex"])
            for item in algorithm["MetricDefinitions"]
        ]
        if definitions:
            trainer = trainer.with_metric_definitions(definitions)
        tensorboard = request.get("TensorBoardOutputConfig")
        if tensorboard is not None:
            from sagemaker.core.shapes import TensorBoardOutputConfig

            # NOTE: ModelTrainer has no ProfilerConfig, so a profiled job's system monitoring
            # settings are left to SageMaker's defaults; the trace goes to TensorBoard's output.
            trainer = trainer.with_tensorboard_output_config(
                TensorBoardOutputConfig(
                    s3_output_path=tensorboard["S3OutputPath"], local_path=tensorboard["LocalPath"]
                )
            )
        channels = [
            InputData(
                channel_name=channel["ChannelName"],
                data_source=self._source(channel["DataSource"]["S3DataSource"]["S3Uri"]),
            )
            for channel in request["InputDataConfig"]
        ]
        return trainer, channels

    def _training_step(self, job: PlannedJob) -> Any:
        from sagemaker.mlops.workflow.steps import TrainingStep

        request = job.request
        trainer, channels = self._model_trainer(request, request["HyperParameters"])
        trainer.input_data_config = channels
        step = TrainingStep(name=job.step, step_args=trainer.train(), cache_config=self.cache)
        self._summarise(
            job.step,
            "Training",
            request["AlgorithmSpecification"]["TrainingImage"],
            request["ResourceConfig"],
            job.branch,
        )
        return step

    def _tuning_step(self, job: PlannedJob) -> Any:
        from sagemaker.mlops.workflow.steps import TuningStep
        from sagemaker.train.tuner import HyperparameterTuner

        request = job.request
        definition = request["TrainingJobDefinition"]
        config = request["HyperParameterTuningJobConfig"]
        static = dict(definition["StaticHyperParameters"])
        trainer, channels = self._model_trainer(definition, static)
        objective = config["HyperParameterTuningJobObjective"]
        limits = config["ResourceLimits"]
        tuner = HyperparameterTuner(
            model_trainer=trainer,
            objective_metric_name=objective["MetricName"],
            objective_type=objective["Type"],
            hyperparameter_ranges=_parameter_ranges(config["ParameterRanges"]),
            metric_definitions=[
                dict(item) for item in definition["AlgorithmSpecification"]["MetricDefinitions"]
            ],
            strategy=config["Strategy"],
            max_jobs=limits["MaxNumberOfTrainingJobs"],
            max_parallel_jobs=limits["MaxParallelTrainingJobs"],
            early_stopping_type=config.get("TrainingJobEarlyStoppingType", "Off"),
            random_seed=config.get("RandomSeed"),
            strategy_config=_strategy_config(config),
            completion_criteria_config=_completion_criteria(config),
            warm_start_config=_warm_start(request),
            base_tuning_job_name=f"{self.plan.pipeline[:12]}-tune",
        )
        step = TuningStep(
            name=job.step, step_args=tuner.tune(inputs=channels), cache_config=self.cache
        )
        self._summarise(
            job.step,
            f"Tuning ({config['Strategy']}, {limits['MaxNumberOfTrainingJobs']} jobs)",
            definition["AlgorithmSpecification"]["TrainingImage"],
            definition["ResourceConfig"],
            job.branch,
        )
        return step

    def _condition_step(self, threshold: Any) -> Any:
        from sagemaker.core.workflow import conditions
        from sagemaker.core.workflow.functions import JsonGet
        from sagemaker.mlops.workflow.condition_step import ConditionStep

        request = self.plan.job("condition").request
        self.summary.append(CompiledStep("condition", f"Condition ({request['Type']})", "", "", 0))
        evaluate = self.steps["evaluate"]
        [property_file] = [p for p in evaluate.property_files if p.name == EVALUATION_PROPERTY_FILE]
        comparison = getattr(conditions, f"Condition{request['Type']}")
        condition = comparison(
            left=JsonGet(
                step_name=evaluate.name,
                property_file=property_file,
                json_path=request["LeftValue"]["Std:JsonGet"]["Path"],
            ),
            right=threshold,
        )
        if_steps: list[Any] = []
        else_steps: list[Any] = []
        if any(job.step == "register" for job in self.plan.jobs):
            if_steps.append(self._register_step("Approved"))
            else_steps.append(self._register_step("Rejected"))
        if_steps += [
            self.steps[job.step]
            for job in self.plan.jobs
            if job.branch == "if" and job.step in self.steps
        ]
        step = ConditionStep(
            name="condition", conditions=[condition], if_steps=if_steps, else_steps=else_steps
        )
        return step

    def _register_step(self, status: str) -> Any:
        from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.mlops.workflow.model_step import ModelStep
        from sagemaker.serve.model_builder import ModelBuilder

        request = self.plan.job("register").request
        specification = request["InferenceSpecification"]
        [container] = specification["Containers"]
        metrics = request["ModelMetrics"]
        statistics = metrics["ModelQuality"]["Statistics"]
        explainability = metrics.get("Explainability", {}).get("Report")
        builder = ModelBuilder(
            s3_model_data_url=self._source(container["ModelDataUrl"]),
            image_uri=container["Image"],
            role_arn=self.role,
            sagemaker_session=self.session,
        )
        step_args = builder.register(
            model_package_group_name=request["ModelPackageGroupName"],
            content_types=list(specification["SupportedContentTypes"]),
            response_types=list(specification["SupportedResponseMIMETypes"]),
            inference_instances=list(specification["SupportedRealtimeInferenceInstanceTypes"]),
            transform_instances=list(specification["SupportedTransformInstanceTypes"]),
            approval_status=status,
            description=f"{self.plan.pipeline}: the model of the train step",
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type=statistics["ContentType"], s3_uri=statistics["S3Uri"]
                ),
                explainability=MetricsSource(
                    content_type=explainability["ContentType"], s3_uri=explainability["S3Uri"]
                )
                if explainability
                else None,
            ),
            customer_metadata_properties={
                "pipeline": self.plan.pipeline,
                "run_id": ExecutionVariables.PIPELINE_EXECUTION_ID,
            },
        )
        depends_on = ["explain"] if explainability and "explain" in self.steps else None
        name = f"register-{status.lower()}"
        self._summarise(
            name,
            f"ModelStep (register, {status})",
            container["Image"],
            {"InstanceType": specification["SupportedRealtimeInferenceInstanceTypes"][0]},
            "if" if status == "Approved" else "else",
        )
        return ModelStep(name=name, step_args=step_args, depends_on=depends_on)

    def _summarise(
        self, name: str, kind: str, image: str, resources: dict[str, Any], branch: str | None
    ) -> None:
        self.summary.append(
            CompiledStep(
                name,
                kind,
                image,
                resources.get("InstanceType", ""),
                int(resources.get("InstanceCount", 0) or 0),
                branch or "",
            )
        )


def _parameter_ranges(ranges: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    result: dict[str, Any] = {}
    for item in ranges.get("IntegerParameterRanges", []):
        result[item["Name"]] = IntegerParameter(
            item["MinValue"], item["MaxValue"], scaling_type=item["ScalingType"]
        )
    for item in ranges.get("ContinuousParameterRanges", []):
        result[item["Name"]] = ContinuousParameter(
            item["MinValue"], item["MaxValue"], scaling_type=item["ScalingType"]
        )
    for item in ranges.get("CategoricalParameterRanges", []):
        result[item["Name"]] = CategoricalParameter(list(item["Values"]))
    return result


def _strategy_config(config: dict[str, Any]) -> Any:
    hyperband = config.get("StrategyConfig", {}).get("HyperbandStrategyConfig")
    if hyperband is None:
        return None
    from sagemaker.core.shapes import HyperbandStrategyConfig, HyperParameterTuningJobStrategyConfig

    return HyperParameterTuningJobStrategyConfig(
        hyperband_strategy_config=HyperbandStrategyConfig(
            min_resource=hyperband["MinResource"], max_resource=hyperband["MaxResource"]
        )
    )


def _completion_criteria(config: dict[str, Any]) -> Any:
    criteria = config.get("TuningJobCompletionCriteria")
    if not criteria:
        return None
    from sagemaker.core.shapes import BestObjectiveNotImproving, TuningJobCompletionCriteria

    not_improving = criteria.get("BestObjectiveNotImproving")
    return TuningJobCompletionCriteria(
        target_objective_metric_value=criteria.get("TargetObjectiveMetricValue"),
        best_objective_not_improving=BestObjectiveNotImproving(
            max_number_of_training_jobs_not_improving=not_improving[
                "MaxNumberOfTrainingJobsNotImproving"
            ]
        )
        if not_improving
        else None,
    )


def _warm_start(request: dict[str, Any]) -> Any:
    warm = request.get("WarmStartConfig")
    if not warm:
        return None
    from sagemaker.core.shapes import (
        HyperParameterTuningJobWarmStartConfig,
        ParentHyperParameterTuningJob,
    )

    return HyperParameterTuningJobWarmStartConfig(
        parent_hyper_parameter_tuning_jobs=[
            ParentHyperParameterTuningJob(
                hyper_parameter_tuning_job_name=parent["HyperParameterTuningJobName"]
            )
            for parent in warm["ParentHyperParameterTuningJobs"]
        ],
        warm_start_type=warm["WarmStartType"],
    )
