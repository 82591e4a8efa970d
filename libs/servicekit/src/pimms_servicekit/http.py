"""Each service's HTTP server: health probes, Prometheus metrics, and the service's own endpoints
(a partner's webhook answers, an SMS provider's delivery reports).

`/health/live` answers while the process runs; `/health/ready` is 200 only when the database and
the broker answer, the consumer has its partitions, no outage stalls the pipeline and the outbox
backlog is under its bound (503 with the reasons otherwise); `/metrics` is Prometheus text.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pimms_servicekit.logging import get_logger

log = get_logger("pimms.http")

Endpoint = Callable[[Request], Awaitable[Response]]
ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]


class HttpServer:
    """uvicorn in the service's event loop, on `host:port` (port 0: any free port)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: ReadinessCheck,
        metrics: Callable[[], Awaitable[bytes]],
    ) -> None:
        self.host = host
        self.port = port
        self.readiness = readiness
        self.metrics = metrics
        self.routes: list[Route] = [
            Route("/health/live", self._live, methods=["GET"]),
            Route("/health/ready", self._ready, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.bound_port: int | None = None

    def route(self, path: str, endpoint: Endpoint, *, methods: list[str]) -> None:
        """Serve `endpoint` at `path` (before start)."""
        self.routes.append(Route(path, endpoint, methods=methods))

    async def start(self) -> None:
        """Listen; raise OSError when the port is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            Starlette(routes=self.routes),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http")
        while not self._server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        log.info("http.listening", host=self.host, port=self.bound_port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
        self._server = None
        self._task = None

    async def _live(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def _ready(self, request: Request) -> Response:
        checks = await self.readiness()
        ready = all(c.get("ok") for c in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(await self.metrics(), media_type=CONTENT_TYPE_LATEST)


def render(registry: Any) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)
