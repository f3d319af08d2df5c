"""The write side behind ``POST /v1/events`` and the SDK-compatible routes (Segment, PostHog).

Body decoding (``body``), validation into canonical events (``validation``, ``names``),
the SDK protocols (``segment``, ``posthog``, ``sdk``, ``sdk_protocol``), the service
(``service``) and the Kinesis writer (``kinesis_writer``).

Layer: a service, beside ``reads/`` and ``search/``; below ``runtime/``, above ``lake/``.
"""
