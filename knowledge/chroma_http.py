"""chromadb's HTTP client (CHROMA_HOST) with a bound on each request.

chromadb 1.x builds its `httpx.Client` with `timeout=None`, and its HttpClient talks to the server before it returns
(tenant and database checks): a chroma server that accepts connections and never answers (hung, or a proxy in
front of a dead one) would hold the asking thread forever, and every knowledge-base call queued behind it. chromadb
offers no setting for it (its API class list is closed), so: the server must answer a heartbeat within the bound
before the client is built, and the client's own session gets the bound once it is.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0  # connect, and each read or write of one request (a query of a large collection takes well under)


def http_client(host: str, port: int, settings: Any) -> Any:
    """chromadb.HttpClient(host, port), every request bounded by TIMEOUT_S; raises on a server that does not answer
    (httpx.TimeoutException, httpx.HTTPError)."""
    import chromadb

    timeout = httpx.Timeout(TIMEOUT_S)
    with httpx.Client(timeout=timeout) as probe:  # the server answers at all, before chromadb's unbounded calls
        probe.get(f"http://{host}:{port}/api/v2/heartbeat").raise_for_status()
    client = chromadb.HttpClient(host=host, port=port, settings=settings)
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = timeout
    else:  # a chromadb whose client is built differently: requests stay unbounded
        log.warning("cannot bound chromadb's HTTP requests (chromadb %s): a hung server would block them",
                    getattr(chromadb, "__version__", "?"))
    return client
