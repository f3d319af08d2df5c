"""OpenSearch client factory: explicit parameters in, a configured client out.

Transport-level retries are off by default (``max_retries=0``): the indexer
retries bulk requests itself with backoff and jitter, and a search request
should fail fast (-> 503) rather than hold an API call open.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection

AWS_SERVICES = ("es", "aoss")


def client_for_url(url: str, *, timeout_s: float = 10.0, max_retries: int = 0,
                   http_compress: bool = False, pool_maxsize: int = 10) -> OpenSearch:
    """A client for a node reachable without auth (local node, osmem, a tunnel).

    ``url`` is ``http(s)://host[:port]``; user info in the URL is used as basic auth.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"OpenSearch URL {url!r} must look like http://host:port")
    return OpenSearch(
        hosts=[url],
        timeout=timeout_s,
        max_retries=max_retries,
        retry_on_timeout=False,
        http_compress=http_compress,
        pool_maxsize=pool_maxsize,
    )


def client_for_aws(endpoint: str, region: str, credentials: Any, *, service: str = "es",
                   timeout_s: float = 10.0, max_retries: int = 0,
                   pool_maxsize: int = 10) -> OpenSearch:
    """A SigV4-signing client for Amazon OpenSearch Service (``es``) or Serverless (``aoss``).

    ``endpoint`` is the domain/collection host, with or without ``https://``;
    ``credentials`` is a botocore credentials object, e.g.
    ``boto3.Session().get_credentials()`` (refreshable ones are re-read per request).
    """
    if service not in AWS_SERVICES:
        raise ValueError(f"service must be one of {AWS_SERVICES}, got {service!r}")
    if credentials is None:
        raise ValueError("no AWS credentials given")
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if not parts.hostname:
        raise ValueError(f"OpenSearch endpoint {endpoint!r} has no host")
    scheme = parts.scheme or "https"
    port = parts.port or (443 if scheme == "https" else 80)
    return OpenSearch(
        hosts=[{"host": parts.hostname, "port": port}],
        http_auth=AWSV4SignerAuth(credentials, region, service),
        use_ssl=scheme == "https",
        verify_certs=scheme == "https",
        connection_class=RequestsHttpConnection,
        timeout=timeout_s,
        max_retries=max_retries,
        retry_on_timeout=False,
        pool_maxsize=pool_maxsize,
    )
