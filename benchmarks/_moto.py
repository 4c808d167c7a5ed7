"""moto's S3 server on 127.0.0.1 for tests and benchmarks, with a log of the requests it served.

`MotoS3(bucket).start()` runs moto's ThreadedMotoServer on a free port, creates the bucket and points
the standard AWS environment variables at it (s3fs, boto3 and dask workers read them, as they would
on a cluster); `stop()` restores the environment. `requests` counts what the server received, by
kind, on the server side (a WSGI wrapper around moto's application): PUT, GET, HEAD, DELETE, POST,
and LIST for a GET of a bucket listing. Needs the `test` extra (moto[server], s3fs).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any


class RequestLog:
    """Requests a WSGI application served, by kind; thread-safe (the server answers on threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def wrap(self, app: Callable) -> Callable:
        def counted(environ: dict, start_response: Callable) -> Iterable[bytes]:
            self.add(environ["REQUEST_METHOD"], environ.get("QUERY_STRING", ""))
            return app(environ, start_response)

        return counted

    def add(self, method: str, query: str) -> None:
        kind = "LIST" if method == "GET" and ("list-type" in query or "prefix=" in query) else method
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def since(self, before: Counter[str]) -> Counter[str]:
        """The requests served since `before` (a snapshot)."""
        return self.snapshot() - before


class MotoS3:
    """A moto S3 server with one bucket, the AWS environment set for it while it runs."""

    def __init__(self, bucket: str, key: str = "diffseg-test-key", secret: str = "diffseg-test-secret"):
        self.bucket, self.key, self.secret = bucket, key, secret
        self.requests = RequestLog()
        self._server: Any = None
        self._saved: dict[str, str | None] = {}

    def start(self) -> MotoS3:
        """Start the server (an OSError when it cannot bind 127.0.0.1), set the environment, make the bucket."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._server = server
        wsgi = server._server  # werkzeug's server: its handler looks up `app` on every request
        assert wsgi is not None, "moto's server did not start"
        wsgi.app = self.requests.wrap(wsgi.app)
        host, port = server.get_host_and_port()
        env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3  # type: ignore[import-untyped]  # (no stubs; moto depends on it)

        return boto3.client("s3")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved = {}

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
