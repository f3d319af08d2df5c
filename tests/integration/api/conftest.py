import pytest
from chalice.test import Client
from moto import mock_aws

import app as app_module
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from chalicelib.runtime.container import Container


@pytest.fixture
def container(monkeypatch):
    with mock_aws():
        fresh = Container(Settings())
        bootstrap(fresh.clients, shards=2)
        monkeypatch.setattr(app_module, "container", fresh)
        yield fresh


@pytest.fixture
def client(container):
    with Client(app_module.app) as test_client:
        yield test_client


def read_stream(container) -> list[bytes]:
    kinesis = container.clients.kinesis
    name = container.settings.stream_name
    blobs = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        blobs += [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]]
    return blobs
