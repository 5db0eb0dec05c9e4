"""The CA bundle is loaded for https:// services only, and once per process: loading it cost
every `tusk` command tens of milliseconds of CPU against a plain http:// service."""

from __future__ import annotations

import ssl

from tusk.client import RepoClient
from tusk.client import http as client_http


async def test_http_services_load_no_ca_bundle_and_https_ones_share_one() -> None:
    client_http._tls_context.cache_clear()
    async with RepoClient("http://127.0.0.1:9"), RepoClient("http://127.0.0.1:9"):
        assert client_http._tls_context.cache_info().misses == 0
    async with RepoClient("https://127.0.0.1:9") as one, RepoClient("https://127.0.0.1:9"):
        info = client_http._tls_context.cache_info()
        assert (info.misses, info.hits) == (1, 1)
        context = client_http._tls_context()
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED  # https is verified as before
        assert one._http._transport._pool._ssl_context is context  # type: ignore[attr-defined]
