"""Start a Spark session for a processing step and clean up what Spark writes."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import zipfile

COMMON_DIR = os.path.dirname(os.path.abspath(__file__))


def create_spark_session(app_name: str, shuffle_partitions: int = 4):
    """Return a SparkSession with the master that the environment gives (local by default).

    The driver binds to `SPARK_LOCAL_IP`, 127.0.0.1 unless the variable is set, and the
    web UI is off. The `common` package is shipped to the Python workers as a zip file, so
    functions from it can run inside RDD operations.
    """
    # NOTE: the steps read and write local paths and were run in local mode only. A
    # multi-instance Spark cluster would need SPARK_LOCAL_IP set to the instance's address,
    # because executors on other hosts cannot reach a driver on 127.0.0.1, and shared storage.
    local_ip = os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Without this, Spark starts its Python workers with `python3` from PATH, which may
    # lack the step's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.appName(app_name)
        .config("spark.driver.host", local_ip)
        .config("spark.driver.bindAddress", local_ip)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        # Without the _SUCCESS marker, an output folder contains only data files.
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    spark.sparkContext.addPyFile(_zip_common_package())
    return spark


def _zip_common_package() -> str:
    folder = tempfile.mkdtemp(prefix="steps-common-")
    path = os.path.join(folder, "common.zip")
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(os.listdir(COMMON_DIR)):
            if name.endswith(".py"):
                archive.write(os.path.join(COMMON_DIR, name), f"common/{name}")
    return path


def hadoop_path(path: str) -> str:
    """Return a local path with Hadoop's glob characters escaped, for `textFile`."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", os.path.abspath(path))


def tidy_parquet_output(folder: str, prefix: str) -> list[str]:
    """Delete Spark's checksum files in `folder` and rename the part files in order.

    Part files become `<prefix>-00000.parquet`, `<prefix>-00001.parquet` and so on, in the
    order of Spark's partition numbers. Returns the new paths.
    """
    parts = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".crc") or name in ("_SUCCESS", "._SUCCESS.crc"):
            os.remove(path)
        elif name.startswith("part-") and name.endswith(".parquet"):
            parts.append(path)
    renamed = []
    for index, path in enumerate(parts):
        target = os.path.join(folder, f"{prefix}-{index:05d}.parquet")
        os.replace(path, target)
        renamed.append(target)
    return renamed
