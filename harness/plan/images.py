"""Container image URIs recorded in job requests.

The local target runs step code under this Python and never pulls an image. The URIs are
recorded so that each request is the one the cloud would receive.
"""

from __future__ import annotations

# Accounts that publish the AWS Deep Learning Containers and the SageMaker Spark
# processing images in most commercial regions.
# NOTE: a few regions (for example ap-east-1, me-south-1) use other accounts. The cloud
# target must resolve the URI with the SageMaker SDK's image_uris.retrieve instead.
_DLC_ACCOUNT = "763104351884"
_SPARK_ACCOUNT = "173754725891"

SPARK_VERSION = "3.5"


def tensorflow_training_image(region: str, framework_version: str, py_version: str) -> str:
    return (
        f"{_DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/"
        f"tensorflow-training:{framework_version}-cpu-{py_version}"
    )


def tensorflow_inference_image(region: str, framework_version: str) -> str:
    return f"{_DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/tensorflow-inference:{framework_version}-cpu"


def spark_processing_image(region: str) -> str:
    return (
        f"{_SPARK_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/"
        f"sagemaker-spark-processing:{SPARK_VERSION}-cpu-py39"
    )
