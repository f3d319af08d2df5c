"""Looking for a user in every store of the local stack: every S3 object version (opened: Parquet
columns, Avro blocks, gzip, dead letters' Kinesis records), every search document."""

from __future__ import annotations

import base64
import gzip
import io
import struct
import zlib

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from chalicelib.processing.strhash import hash_bytes, hash_strings
from chalicelib.stream import codec


def needles(user_id: str) -> list[bytes]:
    """The id and its 64-bit hash as the sketches store it (both byte orders)."""
    h = hash_bytes(user_id.encode())
    assert int(hash_strings(pa.array([user_id]))[0][0]) == h  # the hash the sketches are built from
    return [user_id.encode(), struct.pack("<Q", h), struct.pack(">Q", h)]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos


def _avro_blocks(data: bytes) -> list[bytes]:
    """The decompressed blocks of an Avro object container file (deflate, zstd or none)."""
    pos = 4
    meta: dict[bytes, bytes] = {}
    while True:
        count, pos = _varint(data, pos)
        if count == 0:
            break
        if count < 0:
            _, pos = _varint(data, pos)
            count = -count
        for _ in range(count):
            n, pos = _varint(data, pos)
            k = data[pos:pos + n]
            pos += n
            n, pos = _varint(data, pos)
            meta[k] = data[pos:pos + n]
            pos += n
    pos += 16
    codec_name = meta.get(b"avro.codec", b"null")
    out = []
    while pos < len(data):
        _, pos = _varint(data, pos)
        size, pos = _varint(data, pos)
        block = data[pos:pos + size]
        pos += size + 16
        if codec_name == b"deflate":
            block = zlib.decompress(block, -15)
        elif codec_name == b"zstandard":
            import zstandard
            block = zstandard.ZstdDecompressor().decompress(block, max_output_size=1 << 30)
        out.append(block)
    return out


def opened(body: bytes) -> list[bytes]:
    """The object's bytes and every decoded form of them."""
    forms = [body]
    if body[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(body))
        for column in table.columns:
            for value in column.to_pylist():
                forms.append(value if isinstance(value, bytes) else orjson.dumps(value, default=str))
    elif body[:4] == b"Obj\x01":
        forms += _avro_blocks(body)
    elif body[:2] == b"\x1f\x8b":
        forms.append(gzip.decompress(body))
    elif body[:1] == b"{":
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return forms
        if isinstance(doc, dict) and isinstance(doc.get("payload"), str):
            for record in orjson.loads(doc["payload"]).get("Records", []):
                raw = base64.b64decode(record["kinesis"]["data"])
                forms.append(raw)
                try:
                    forms.append(codec.decode_record(raw))
                except codec.UndecodableRecord:
                    pass
    return forms


def s3_hits(s3, user_id: str) -> list[str]:
    """``bucket/key@version`` of every object version in which the user's id or hash occurs."""
    marks = needles(user_id)
    hits = []
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                if any(m in form for form in opened(body) for m in marks):
                    hits.append(f"{bucket}/{v['Key']}@{v['VersionId']}")
    return hits


def search_hits(search_url: str, prefix: str, user_id: str) -> list[dict]:
    """Every search document (any index) whose source names the user."""
    import requests
    response = requests.post(f"{search_url}/{prefix}-*/_search", json={"size": 10000, "query": {"match_all": {}}}, timeout=60)
    response.raise_for_status()
    return [h for h in response.json()["hits"]["hits"] if user_id in orjson.dumps(h["_source"]).decode()]
