"""Shared fixtures for the step tests: a local Spark session and `common` on sys.path."""

from __future__ import annotations

import os
import sys

import pytest

from harness.local.pipeline import LOCAL_SPARK_SUBMIT_OPTS
from tests.steps.steprunner import STEPS

# The steps import shared code as `common`, the way their bootstrap sets it up.
if str(STEPS) not in sys.path:
    sys.path.insert(0, str(STEPS))

# Keep Spark on the loopback interface, and start its workers with this interpreter.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# The Spark driver's Java options that harness gives local jobs.
os.environ.setdefault("SPARK_SUBMIT_OPTS", LOCAL_SPARK_SUBMIT_OPTS)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("steps-tests")
        .config("spark.driver.memory", "512m")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
