"""How the simulated partners outside Kafka get their messages and send their answers.

- `WebhookPartner`: a small HTTP server (uvicorn) taking the gateway's signed POSTs, checking the
  signature (HMAC-SHA256 over `timestamp.body`, specs/partners.md); answers are POSTed, signed
  the same way, to the gateway's `/partners/<id>/responses`.
- `FileDropPartner`: watches its outbound folder for export files (never a `.part`), and drops its
  answers as one response file, written under a temporary name then renamed.

Written from the specs, never from the gateway's code.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pimms_contracts.partners import FileDropTransport, PartnerDirectory, WebhookTransport
from pimms_servicekit.health import heartbeat_path
from pimms_servicekit.http import HttpServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

WINDOW_S = 300
ENCODING = "iso-8859-1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def signed(secret: str, body: bytes, *, delivery: str) -> dict[str, str]:
    """The headers of a signed POST, now."""
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "X-PIMMS-Delivery": delivery,
        "X-PIMMS-Timestamp": str(timestamp),
        "X-PIMMS-Signature": signature(secret, timestamp, body),
    }


class WebhookPartner:
    """A webhook partner's endpoint: any POST path, signature checked, body kept for the demo."""

    def __init__(self, *, partner_id: str, secret: str, port: int = 0) -> None:
        self.partner_id = partner_id
        self.secret = secret
        self.port = port
        self.received: list[bytes] = []
        self.refused = 0
        self._taken = 0
        self._server: HttpServer | None = None

    async def start(self) -> int:
        """Listen (on a free port if none was given); return the port."""

        async def ready() -> dict[str, Any]:
            return {}

        async def metrics() -> bytes:
            return b""

        server = HttpServer(host="127.0.0.1", port=self.port, readiness=ready, metrics=metrics)
        server.route("/{path:path}", self._take, methods=["POST"])
        await server.start()
        self._server = server
        assert server.bound_port is not None
        self.port = server.bound_port
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.stop()

    def url(self) -> str:
        """Where the gateway must POST."""
        return f"http://127.0.0.1:{self.port}/{self.partner_id}/referrals"

    def take(self) -> list[bytes]:
        """The bodies received since the last call."""
        new = self.received[self._taken :]
        self._taken = len(self.received)
        return new

    async def _take(self, request: Request) -> Response:
        body = await request.body()
        stamp = request.headers.get("x-pimms-timestamp", "")
        given = request.headers.get("x-pimms-signature", "")
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= WINDOW_S
        if not fresh or not hmac.compare_digest(
            given, signature(self.secret, int(stamp or 0), body)
        ):
            self.refused += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.received.append(body)
        return JSONResponse({"received": True}, status_code=200)


class FileDropPartner:
    """Eau du Grand Lyon's side of the folders: reads export files, drops response files."""

    def __init__(self, *, outbound: Path, inbound: Path) -> None:
        self.outbound = outbound
        self.inbound = inbound
        self._read: set[str] = set()
        self._dropped = 0

    def take(self) -> list[bytes]:
        """Each record of the export files that appeared since the last call."""
        if not self.outbound.is_dir():
            return []
        records: list[bytes] = []
        for path in sorted(self.outbound.glob("PIMMS_EGL_*.csv")):
            if path.name in self._read:
                continue
            self._read.add(path.name)
            rows = list(
                csv.reader(
                    io.StringIO(path.read_bytes().decode(ENCODING), newline=""), delimiter=";"
                )
            )
            for row in rows[1:]:
                out = io.StringIO()
                csv.writer(out, delimiter=";", lineterminator="\r\n").writerow(row)
                records.append(out.getvalue().encode(ENCODING, errors="replace"))
        return records

    def drop(self, header: str, lines: Sequence[bytes]) -> Path:
        """One response file with these lines, renamed into place when complete."""
        self.inbound.mkdir(parents=True, exist_ok=True)
        self._dropped += 1
        name = f"REPONSES_{time.strftime('%Y%m%d%H%M%S')}_{self._dropped}.csv"
        temporary = self.inbound / f".{name}.part"
        temporary.write_bytes((header + "\r\n").encode(ENCODING) + b"".join(lines))
        os.replace(temporary, self.inbound / name)
        return self.inbound / name


class GatewayWebhooks:
    """Signed answers POSTed to the gateway's HTTP server (its port from its heartbeat file)."""

    def __init__(self, *, data_dir: Path, secrets: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.secrets = secrets
        self._client: httpx.AsyncClient | None = None
        self.statuses: list[int] = []

    def base_url(self) -> str:
        """The gateway's HTTP server, as its heartbeat says."""
        beat = json.loads(heartbeat_path(self.data_dir, "partner-gateways").read_text("utf-8"))
        return f"http://127.0.0.1:{beat['http_port']}"

    async def post(self, partner_id: str, body: bytes, *, delivery: str) -> int:
        """POST one answer, signed; the gateway's status code."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        headers = signed(self.secrets[partner_id], body, delivery=delivery)
        response = await self._client.post(
            f"{self.base_url()}/partners/{partner_id}/responses", content=body, headers=headers
        )
        self.statuses.append(response.status_code)
        return response.status_code

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()


def demo_directory(text: str, *, urls: dict[str, str], export_every: str = "2s") -> str:
    """The directory's TOML with webhook partners' URLs and file drops' pace replaced."""
    chunks = text.split("[[partner]]")
    return "[[partner]]".join(
        [chunks[0], *(_demo_partner(c, urls=urls, export_every=export_every) for c in chunks[1:])]
    )


def _demo_partner(chunk: str, *, urls: dict[str, str], export_every: str) -> str:
    partner_id = chunk.split('id = "', 1)[1].split('"', 1)[0] if 'id = "' in chunk else ""
    url = urls.get(partner_id)
    if url is not None:
        chunk = _set_value(chunk, "url", url)
    return _set_value(chunk, "export_every", export_every)


def _set_value(chunk: str, name: str, value: str) -> str:
    marker = f'{name} = "'
    if marker not in chunk:
        return chunk
    before, rest = chunk.split(marker, 1)
    return before + f'{marker}{value}"' + rest.split('"', 1)[1]


def webhook_port(directory: PartnerDirectory, partner_id: str) -> int:
    """The port a running platform's directory says a webhook partner listens on."""
    partner = directory.get(partner_id)
    if partner is None or not isinstance(partner.transport, WebhookTransport):
        return 0
    return urlsplit(partner.transport.url).port or 80


def file_drop_folders(
    directory: PartnerDirectory, partner_id: str, data_dir: Path
) -> tuple[Path, Path] | None:
    """(outbound, inbound) folders of a file-drop partner, relative to the data directory."""
    partner = directory.get(partner_id)
    if partner is None or not isinstance(partner.transport, FileDropTransport):
        return None
    out, into = Path(partner.transport.outbound_dir), Path(partner.transport.inbound_dir)
    return (
        out if out.is_absolute() else data_dir / out,
        into if into.is_absolute() else data_dir / into,
    )
