"""AWS clients, built once per process from the settings and passed in."""

from __future__ import annotations

import functools

import boto3
import botocore.session
from botocore.config import Config

from chalicelib.runtime.settings import Settings

# Short timeouts and few botocore retries: the services do their own retrying
# with backoff where it matters, and an API call must not hang the request.
_BOTO_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"},
                      max_pool_connections=32)


class Clients:
    """Lazily created boto3 clients (creating one costs ~50 ms)."""

    def __init__(self, settings: Settings, loader=None) -> None:
        self.settings = settings
        core = botocore.session.get_session()
        if loader is not None:  # botocore's parsed service models, shared with an earlier session
            core.register_component("data_loader", loader)
        self._core = core
        self.session = boto3.session.Session(region_name=settings.region, botocore_session=core)

    def renewed(self) -> "Clients":
        """The same settings in a new session: credentials are resolved again, no connection is reused;
        the service models already loaded are kept."""
        return Clients(self.settings, self._core.get_component("data_loader"))

    def client(self, service: str):
        """A new client for any other service (QuickSight, STS, Athena...)."""
        return self.session.client(service, endpoint_url=self.settings.aws_endpoint_url, config=_BOTO_CONFIG)

    @functools.cached_property
    def kinesis(self):
        return self.client("kinesis")

    @functools.cached_property
    def dynamodb(self):
        return self.client("dynamodb")

    @functools.cached_property
    def s3(self):
        return self.client("s3")

    @functools.cached_property
    def glue(self):
        return self.client("glue")

    @functools.cached_property
    def sqs(self):
        return self.client("sqs")
