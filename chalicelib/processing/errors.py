"""Typed exceptions raised by ``chalicelib.processing``.

Every exception derives from :class:`ProcessingError`, so a caller can catch
the whole family with one ``except`` clause.  Bad *input data* (undecodable
records, lines that fail the schema) never raises: it is returned as
``BadRecord`` values by :mod:`.decode`.  These exceptions are for bad
configuration or for misuse of the API.
"""

from __future__ import annotations


class ProcessingError(Exception):
    """Base class of every error raised by this package."""


class MetricConfigError(ProcessingError, ValueError):
    """The metric configuration is invalid.

    The message always names the metric (or ``settings``) and the field,
    e.g. ``metric 'class_activity': field 'window.tumbling': ...``.
    """

    def __init__(self, metric: str | None, field: str, problem: str) -> None:
        self.metric = metric
        self.field = field
        self.problem = problem
        where = f"metric {metric!r}" if metric else "metrics config"
        super().__init__(f"{where}: field {field!r}: {problem}")


class InvalidArgumentError(ProcessingError, ValueError):
    """A function was called with an argument outside its domain."""


class DurationError(ProcessingError, ValueError):
    """A duration string such as ``"5m"`` cannot be parsed."""


class PartialsError(ProcessingError, ValueError):
    """A partials table is not usable (missing metadata, mixed metrics, ...)."""


class SketchError(ProcessingError, ValueError):
    """A serialized HyperLogLog sketch is corrupt or of an unknown format."""


class EventsTableError(ProcessingError, ValueError):
    """An events table lacks a column the aggregation needs."""
