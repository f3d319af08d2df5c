"""What goes into the Lambda artifacts: the one place to edit (runtime, layers, files).

The template generator and the deploy command import :data:`PACKAGE` (and
:func:`runtime_spec`); the builder (:mod:`eventpipe.deploy.artifacts`) reads
nothing else. Sizes are in bytes; Lambda's "MB" limits are MiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

MIB = 1 << 20
#: Lambda: a zip uploaded directly, and a function plus all its layers once unzipped.
LAMBDA_ZIP_LIMIT = 50 * MIB
LAMBDA_UNZIPPED_LIMIT = 250 * MIB
#: Our budget: 20 % of the unzipped limit kept for growth.
UNZIPPED_BUDGET = 200 * MIB
#: Functions allowed past the budget (never past Lambda's limit), each with the reason and the way back.
BUDGET_EXCEPTIONS = MappingProxyType({
    "finalize_windows": (225 * MIB, "DuckDB (aggregation, for backfill requests) and pyiceberg (the raw table) "
                                    "together: 217.5 MiB; the way back is backfill through the queue (the planner "
                                    "itself loads no DuckDB)"),
    "finalize_worker": (225 * MIB, "DuckDB (aggregation) and pyiceberg (the raw table) together: 217.5 MiB; "
                                   "the way back is an aggregation of finals without DuckDB"),
    "process_regulations": (225 * MIB, "the deletion job re-finalizes the hours it cleaned in process (DuckDB "
                                       "and pyiceberg, as finalize_worker): 218 MiB; the way back is to queue "
                                       "those hours' units to finalize_worker and wait for their done markers"),
})


def budget(function: str) -> int:
    """The unzipped bytes a function may take with its layers."""
    return BUDGET_EXCEPTIONS.get(function, (UNZIPPED_BUDGET, ""))[0]


@dataclass(frozen=True)
class RuntimeSpec:
    """A Lambda Python runtime and the wheels that run on it.

    Attributes:
        name: The Lambda runtime identifier (``python3.12``).
        python: ``major.minor`` of its interpreter.
        glibc: The glibc of its OS image; wheels tagged up to this manylinux level load.
        os: The OS image, for the reports.
        architecture: ``x86_64`` (Lambda's default) or ``aarch64``.
    """

    name: str
    python: str
    glibc: tuple[int, int]
    os: str
    architecture: str = "x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def platforms(self) -> tuple[str, ...]:
        """pip ``--platform`` tags, newest first (pip does not expand ``manylinux_2_X`` itself)."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.architecture}" for m in range(minor, 16, -1)]
        return (*tags, f"manylinux2014_{self.architecture}")


RUNTIMES: Mapping[str, RuntimeSpec] = MappingProxyType({
    "python3.12": RuntimeSpec("python3.12", "3.12", (2, 34), "Amazon Linux 2023"),
    "python3.13": RuntimeSpec("python3.13", "3.13", (2, 34), "Amazon Linux 2023"),
})


@dataclass(frozen=True)
class LayerSpec:
    """A Lambda layer built from the wheels of some distributions (files under ``python/``)."""

    name: str
    distributions: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function of app.py: its Chalice name, handler, trigger kind and layers."""

    name: str
    handler: str
    kind: str  # "api" | "kinesis" | "schedule" | "sqs"
    layers: tuple[str, ...]


@dataclass(frozen=True)
class PackageSpec:
    """Everything the builder needs to know; see the module docstring."""

    runtime: str
    functions: tuple[FunctionSpec, ...]
    layers: tuple[LayerSpec, ...]
    #: The code zip holds the files matching ``code_include`` minus ``code_exclude`` (globs, ``**`` = any depth)
    #: plus Chalice's runtime (chalice/__init__.py, chalice/app.py) and every distribution no layer takes.
    code_include: tuple[str, ...]
    code_exclude: tuple[str, ...]
    #: Distributions resolved from requirements.txt that no function imports: left out with the reason.
    excluded_distributions: Mapping[str, str]
    #: Files dropped from every distribution (globs relative to site-packages).
    drop_files: tuple[str, ...]
    #: ... and from one distribution.
    drop_files_by_distribution: Mapping[str, tuple[str, ...]]
    #: Distributions whose ELF files are stripped (never auditwheel's ``*.libs`` directories).
    strip_distributions: tuple[str, ...]
    #: Ship byte code compiled by the target interpreter (when it is installed on the build machine):
    #: Lambda's /var/task and /opt are read-only, so without it every cold start compiles every module.
    compile_bytecode: bool = True
    #: Third-party distributions keep their ``.py`` files beside the byte code; all others ship byte code
    #: only (tracebacks inside them show file and line, not the source text). app.py, chalicelib/ and
    #: chalice's runtime always keep their sources.
    keep_sources: tuple[str, ...] = ()

    def function(self, name: str) -> FunctionSpec:
        for spec in self.functions:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)


_LAKE = ("pyarrow", "numpy", "duckdb")

PACKAGE = PackageSpec(
    runtime="python3.12",
    layers=(
        LayerSpec("pyarrow", ("pyarrow",), "pyarrow (no flight, tests, headers, Cython sources; .so stripped)"),
        LayerSpec("numpy", ("numpy",), "numpy (no tests, f2py, headers, random/fft; numpy.libs as shipped)"),
        LayerSpec("duckdb", ("duckdb",), "duckdb"),
        # The raw events Iceberg table (chalicelib/lake/raw_table.py): pyiceberg and what it imports at run time.
        LayerSpec("iceberg", ("pyiceberg", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
                              "typing-extensions", "cachetools", "mmh3", "pyroaring", "strictyaml", "python-dateutil",
                              "six", "zstandard", "rich", "pyparsing"),
                  "pyiceberg (no CLI) and its run-time imports"),
    ),
    functions=(
        # The API reads rollups for GET /v1/metrics (pyarrow, numpy); chalicelib.processing imports its
        # submodules lazily, so decoding and aggregation (duckdb) are never loaded there.
        FunctionSpec("api_handler", "app.app", "api", ("pyarrow", "numpy")),
        FunctionSpec("archive_events", "app.archive_events", "kinesis", _LAKE),
        FunctionSpec("aggregate_events", "app.aggregate_events", "kinesis", _LAKE),
        FunctionSpec("finalize_windows", "app.finalize_windows", "schedule", (*_LAKE, "iceberg")),
        FunctionSpec("finalize_worker", "app.finalize_worker", "sqs", (*_LAKE, "iceberg")),
        # The raw table's one writer: commits, compaction, expiry (no DuckDB: chalicelib.processing is not loaded).
        FunctionSpec("commit_events", "app.commit_events", "schedule", ("pyarrow", "numpy", "iceberg")),
        # Privacy deletions: the raw table (a writer, under its lease), rollups (the finalizer's backfill), search.
        FunctionSpec("process_regulations", "app.process_regulations", "schedule", (*_LAKE, "iceberg")),
        FunctionSpec("index_events", "app.index_events", "kinesis", ()),
        FunctionSpec("search_retention", "app.search_retention", "schedule", ()),
    ),
    code_include=("app.py", "chalicelib/**"),
    # The tools live in eventpipe/, outside the rule. Left out of chalicelib/: the Glue table definitions
    # (the local bootstrap and the deploy template use them, no handler does), the local-only tap consumer and
    # the reader of the archive from before the Iceberg table (only `eventpipe lake migrate` reads it).
    code_exclude=("chalicelib/lake/glue.py", "chalicelib/stream/tap.py", "chalicelib/lake/legacy_archive.py", "**/__pycache__/**", "**/*.pyc"),
    excluded_distributions=MappingProxyType({
        "grpcio": "opensearch-py 3.x requires it for its gRPC transport; the REST client never imports it",
        "opensearch-protobufs": "the gRPC messages of opensearch-py 3.x; never imported by the REST client",
        "protobuf": "only opensearch-protobufs imports it",
        "click": "pyiceberg's command line only",
        "pygments": "rich's syntax highlighting only (pyiceberg prints no code)",
        "markdown-it-py": "rich's Markdown rendering only",
        "mdurl": "only markdown-it-py imports it",
        "fsspec": "pyiceberg's fsspec FileIO only: the lake uses its own boto3 FileIO (chalicelib/lake/iceberg_io.py)",
        "tenacity": "pyiceberg's REST and Hive catalogs only: the lake uses the Glue catalog",
    }),
    drop_files=(
        "**/tests/**", "**/__pycache__/**", "**/*.pyc", "**/*.pyx", "**/*.pxd", "**/*.pxi", "**/*.pyi",
        "**/*.h", "**/*.hpp", "**/*.cc", "**/*.c", "**/py.typed", "bin/**",
    ),
    drop_files_by_distribution=MappingProxyType({
        "pyarrow": (
            "pyarrow/include/**", "pyarrow/includes/**", "pyarrow/src/**", "pyarrow/conftest.py",
            # Arrow Flight (gRPC) and the C++ test helpers: never loaded.
            "pyarrow/libarrow_flight.so*", "pyarrow/libarrow_python_flight.so*", "pyarrow/_flight.*",
            "pyarrow/flight.py", "pyarrow/_pyarrow_cpp_tests.*",
            # Python bindings of file systems and formats the lake does not use (their C++ stays in libarrow).
            "pyarrow/_azurefs.*", "pyarrow/_gcsfs.*", "pyarrow/_hdfs.*", "pyarrow/_orc.*", "pyarrow/_dataset_orc.*",
            "pyarrow/orc.py", "pyarrow/_substrait.*", "pyarrow/substrait.py", "pyarrow/cuda.py", "pyarrow/jvm.py",
            "pyarrow/benchmark.py",
            # The wheel has no symlinks: three copies of each library; the loader uses the SONAME (.so.2500).
            "pyarrow/libarrow_python.so", "pyarrow/libarrow_python.so.*.*.*",
            "pyarrow/libarrow_python_parquet_encryption.so", "pyarrow/libarrow_python_parquet_encryption.so.*.*.*",
        ),
        "numpy": (
            "numpy/f2py/**", "numpy/_core/include/**", "numpy/_core/lib/**", "numpy/_pyinstaller/**",
            "numpy/conftest.py", "numpy/_core/_simd.*", "numpy/_core/_*_tests.*",
            # Lazily loaded submodules (numpy.__getattr__) that neither chalicelib, pyarrow nor duckdb use.
            # numpy.ma and numpy.linalg ARE loaded (by pyarrow, and numpy.lib at import): they stay.
            "numpy/random/**", "numpy/polynomial/**", "numpy/fft/**", "numpy/testing/**", "numpy/typing/**",
        ),
        "duckdb": ("_duckdb-stubs/**", "adbc_driver_duckdb/**", "duckdb/experimental/**", "duckdb/query_graph/**"),
        "pyiceberg": ("pyiceberg/cli/**",),
        # The asyncio client: its imports are guarded by `except ImportError` (aiohttp is not installed).
        "opensearch-py": (
            "opensearchpy/_async/client/**", "opensearchpy/_async/plugins/**", "opensearchpy/_async/transport.py",
            "opensearchpy/_async/http_aiohttp.py", "opensearchpy/_async/_extra_imports.py",
            "opensearchpy/connection/http_async.py", "opensearchpy/connection/async_connections.py",
            "opensearchpy/helpers/test.py",
        ),
    }),
    strip_distributions=("pyarrow", "pyyaml", "backports-zstd", "duckdb", "zstandard", "pyroaring", "pydantic-core", "mmh3"),
)


def runtime_spec(name: str) -> RuntimeSpec:
    """The :class:`RuntimeSpec` of a Lambda runtime name.

    Raises:
        KeyError: The runtime is not one the builder knows (see :data:`RUNTIMES`).
    """
    try:
        return RUNTIMES[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None
