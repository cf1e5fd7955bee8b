"""Whether Spark can run here, and the one Spark session a process uses.

PySpark is an optional extra (``likelens[spark]``): nothing here imports it at module load,
so ``likelens info`` and ``--engine spark`` can say what is missing instead of failing on an
import. Only what PySpark ships is used (no package fetched from Maven at run time).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from likelens.errors import EngineError

INSTALL = "pip install 'likelens[spark]' (PySpark and pandas) and a Java 17 or 21 runtime"
_LOG4J = Path(__file__).with_name("log4j2.properties")


@dataclass(frozen=True)
class SparkOptions:
    """How to reach Spark: the master URL (``local[2]``, ``spark://host:7077``, ``yarn``,
    ``k8s://…``), the shuffle partitions, and any further ``spark.*`` settings."""

    master: str = "local[*]"
    partitions: int | None = None
    conf: Mapping[str, str] = field(default_factory=dict)


def missing() -> list[str]:
    """What ``--engine spark`` lacks on this machine (empty when it can run): checked without
    importing PySpark, which takes seconds."""
    gaps = []
    for module, what in (("pyspark", "PySpark"), ("pandas", "pandas (PySpark's Arrow UDFs)")):
        if importlib.util.find_spec(module) is None:
            gaps.append(what)
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        gaps.append("Java (no `java` on PATH and no JAVA_HOME)")
    return gaps


def require() -> None:
    """Refuse ``--engine spark`` here (exit 2) when something it needs is missing, naming
    what to install."""
    gaps = missing()
    if gaps:
        raise EngineError(f"--engine spark needs {', '.join(gaps)}: {INSTALL}")


def session(options: SparkOptions | None = None) -> Any:
    """The process's Spark session, started on first use with LikeLens's settings.

    Arrow carries every batch between the JVM and Python; executors run this interpreter in
    local mode (on a cluster, its image or ``spark.pyspark.python`` must hold likelens); the
    web UI and the console progress bar are off and Spark's own logging is quiet, so the
    terminal shows LikeLens's progress only.
    """
    require()
    options = options or SparkOptions()
    from pyspark.sql import SparkSession

    local = options.master.startswith("local")
    if local:
        # Executors of a local master are child processes of this interpreter's Spark:
        # they must import likelens and its pinned libraries from the same environment.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf: dict[str, str] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}",
        # The canonical table comes back to the driver whole (features run there), which is
        # far above Spark's 1 GiB default cap on collected results.
        "spark.driver.maxResultSize": "0",
    }
    if local:
        conf["spark.driver.memory"] = "4g"
    if options.partitions:
        conf["spark.sql.shuffle.partitions"] = str(int(options.partitions))
        conf["spark.default.parallelism"] = str(int(options.partitions))
    conf.update(options.conf)
    builder = SparkSession.builder.master(options.master).appName("likelens")
    for k, v in conf.items():
        builder = builder.config(k, v)
    log = Path(tempfile.gettempdir()) / "likelens-spark" / f"jvm-{os.getpid()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _stderr_to(log):  # the JVM inherits the descriptor: its chatter goes to the log
            spark = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say why, in one line
        raise EngineError(f"Spark did not start on {options.master} ({_first_line(exc)}; "
                          f"the JVM's output is in {log})") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Standard error (the descriptor, which a child JVM inherits) into ``path`` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as fh:
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def spark_errors() -> Iterator[None]:
    """A failure inside Spark (a lost executor, a task that raised) as one ``EngineError``
    line instead of a JVM stack trace; LikeLens's own errors pass through as they are."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JError) as exc:
        raise EngineError(f"Spark failed: {_first_line(exc)}") from exc


def partitions_of(spark: Any) -> int:
    """How many partitions a stage's work is cut into: the session's shuffle partitions."""
    return int(spark.conf.get("spark.sql.shuffle.partitions"))


def version(spark: Any) -> str:
    return str(spark.version)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
