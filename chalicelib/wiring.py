"""Builds every service once per process from the settings (lazily)."""

from __future__ import annotations

import functools
import time

from chalicelib.apps import AppStore
from chalicelib.clients import Clients
from chalicelib.config import Settings
from chalicelib.ingest.kinesis_writer import KinesisWriter, RetryPolicy
from chalicelib.ingest.service import IngestService


def clock_ms() -> int:
    return int(time.time() * 1000)


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = Clients(settings)

    @functools.cached_property
    def apps(self) -> AppStore:
        return AppStore(self.clients.dynamodb, self.settings.apps_table)

    @functools.cached_property
    def ingest(self) -> IngestService:
        writer = KinesisWriter(self.clients.kinesis, self.settings.stream_name,
                               RetryPolicy(max_attempts=self.settings.kinesis_max_attempts))
        return IngestService(writer, clock_ms)
