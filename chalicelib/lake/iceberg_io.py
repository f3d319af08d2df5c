"""pyiceberg's file access over *our* boto3 S3 client, and the Glue catalog that uses it.

Why not pyiceberg's own PyArrowFileIO: every S3 request of the table (data files,
manifests, metadata) then goes through the one client the container built, so it
works unchanged against AWS, moto server, in-process moto and the fault proxies,
and a botocore hook counts every request (``bench/lake_cost.py``).

Reads of large objects are ranged (Parquet footers and the column chunks a
projection needs); small objects are read in one GET. Writes are one PUT on close.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.io import FileIO, InputFile, InputStream, OutputFile, OutputStream

from chalicelib.lake import s3io

#: Objects up to this size are read whole in one GET; larger ones with ranged GETs.
WHOLE_READ_BYTES = 4 * 1024 * 1024


def split_location(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    if parsed.scheme not in ("s3", "s3a", "s3n"):
        raise ValueError(f"not an S3 location: {location}")
    return parsed.netloc, parsed.path.lstrip("/")


class _RangedStream(io.RawIOBase):
    """A seekable read-only stream over one S3 object: each read is one ranged GET."""

    def __init__(self, s3, bucket: str, key: str, size: int) -> None:
        self._s3, self._bucket, self._key, self._size, self._pos = s3, bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        body = self._s3.get_object(Bucket=self._bucket, Key=self._key,
                                   Range=f"bytes={self._pos}-{end - 1}")["Body"].read()
        self._pos += len(body)
        return body

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _S3Object:
    """Where an input or output file lives, and whether it is there (one HEAD)."""

    def __init__(self, location: str, s3) -> None:
        super().__init__(location)  # type: ignore[call-arg] - InputFile / OutputFile take the location
        self._s3 = s3
        self._bucket, self._key = split_location(location)
        self._size: int | None = None

    def exists(self) -> bool:
        return s3io.head(self._s3, self._bucket, self._key) is not None


class S3InputFile(_S3Object, InputFile):
    def __len__(self) -> int:
        if self._size is None:
            meta = s3io.head(self._s3, self._bucket, self._key)
            if meta is None:
                raise FileNotFoundError(self.location)
            self._size = int(meta["ContentLength"])
        return self._size

    def open(self, seekable: bool = True) -> InputStream:
        """One GET of the first :data:`WHOLE_READ_BYTES` (the whole object, for metadata, manifests and
        most data files); a larger object is then read with ranged GETs."""
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes=0-{WHOLE_READ_BYTES - 1}")
        except ClientError as exc:
            if s3io.is_missing(exc):
                raise FileNotFoundError(self.location) from exc
            raise
        head = answer["Body"].read()
        total = int(answer.get("ContentRange", "").rsplit("/", 1)[-1] or len(head)) \
            if answer.get("ContentRange") else len(head)
        self._size = total
        if total <= len(head):
            return io.BytesIO(head)  # type: ignore[return-value]
        return io.BufferedReader(_RangedStream(self._s3, self._bucket, self._key, total),  # type: ignore[return-value]
                                 buffer_size=1024 * 1024)


class _UploadOnClose(io.BytesIO):
    def __init__(self, target: "S3OutputFile") -> None:
        super().__init__()
        self._target = target

    def close(self) -> None:
        if not self.closed:
            self._target._upload(self.getvalue())
        super().close()


class S3OutputFile(_S3Object, OutputFile):
    def __len__(self) -> int:
        if self._size is None:
            return len(self.to_input_file())
        return self._size

    def to_input_file(self) -> InputFile:
        return S3InputFile(self.location, self._s3)

    def create(self, overwrite: bool = False) -> OutputStream:
        if not overwrite and self.exists():
            raise FileExistsError(self.location)
        return _UploadOnClose(self)  # type: ignore[return-value]

    def _upload(self, body: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body)
        self._size = len(body)


class S3FileIO(FileIO):
    """pyiceberg FileIO on a boto3 S3 client."""

    def __init__(self, s3, properties: dict[str, str] | None = None) -> None:
        super().__init__(properties or {})
        self.s3 = s3

    def new_input(self, location: str) -> InputFile:
        return S3InputFile(location, self.s3)

    def new_output(self, location: str) -> OutputFile:
        return S3OutputFile(location, self.s3)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        path = location if isinstance(location, str) else location.location
        bucket, key = split_location(path)
        self.s3.delete_object(Bucket=bucket, Key=key)


class BotoGlueCatalog(GlueCatalog):
    """pyiceberg's Glue catalog, on the container's Glue and S3 clients."""

    def __init__(self, glue, s3, name: str = "eventpipe", **properties: Any) -> None:
        super().__init__(name, client=glue, **properties)
        self._file_io = S3FileIO(s3)
        self.s3 = s3

    def _load_file_io(self, properties: Any = None, location: str | None = None) -> FileIO:  # noqa: D102
        return self._file_io
