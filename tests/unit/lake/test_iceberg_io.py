"""pyiceberg's file access over our boto3 client: small objects in one GET, large ones by ranges,
a missing object as FileNotFoundError, writes as one PUT (in-process moto)."""

from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from chalicelib.lake.iceberg_io import WHOLE_READ_BYTES, S3FileIO


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lake-io")
        yield client


def _gets(s3) -> list[str]:
    seen: list[str] = []
    s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: seen.append(params.get("Range", "")))
    return seen


def test_a_small_object_is_read_in_one_get_and_a_large_one_by_ranges(s3):
    small, large = os.urandom(1000), os.urandom(WHOLE_READ_BYTES + 3 * 1024 * 1024 + 7)
    s3.put_object(Bucket="lake-io", Key="small", Body=small)
    s3.put_object(Bucket="lake-io", Key="large", Body=large)
    io = S3FileIO(s3)
    gets = _gets(s3)
    assert io.new_input("s3://lake-io/small").open().read() == small and len(gets) == 1
    gets.clear()
    stream = io.new_input("s3://lake-io/large").open()
    stream.seek(len(large) - 8)
    assert stream.read(8) == large[-8:]  # a footer read: one ranged GET, not the whole object
    stream.seek(10)
    assert stream.read(100) == large[10:110]
    assert all(r.startswith("bytes=") for r in gets) and len(gets) <= 4, gets
    assert len(io.new_input("s3://lake-io/large")) == len(large)


def test_a_missing_object_is_file_not_found_and_writes_are_one_put(s3):
    io = S3FileIO(s3)
    with pytest.raises(FileNotFoundError):
        io.new_input("s3://lake-io/none").open()
    out = io.new_output("s3://lake-io/new")
    assert not out.exists()
    with out.create() as stream:
        stream.write(b"abc")
    assert s3.get_object(Bucket="lake-io", Key="new")["Body"].read() == b"abc" and len(out) == 3
    with pytest.raises(FileExistsError):
        io.new_output("s3://lake-io/new").create(overwrite=False)
    io.delete("s3://lake-io/new")
    assert not io.new_output("s3://lake-io/new").exists()
