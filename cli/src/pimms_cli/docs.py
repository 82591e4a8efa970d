"""`pimms docs`: the services' AsyncAPI documents (contracts/asyncapi/) served on a local port.

`/` lists the services; `/<service>.html` shows one document as tables (servers, channels with
their operations and messages); `/<service>.json` is the AsyncAPI document itself, for any
AsyncAPI tool (`npx @asyncapi/cli start studio`, ...). No network access needed.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pimms_contracts

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%;margin-bottom:2rem}"
    "td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "code{font-size:.9em}"
)


def documents_dir() -> Path:
    """contracts/asyncapi/ of this checkout."""
    return Path(pimms_contracts.__file__).resolve().parents[2] / "asyncapi"


def load_documents(directory: Path) -> dict[str, dict[str, Any]]:
    """Service name -> its AsyncAPI document."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def render_index(documents: dict[str, dict[str, Any]]) -> str:
    """The list of services, each with its description and links."""
    rows = "".join(
        f"<tr><td><a href='/{html.escape(name)}.html'>{html.escape(name)}</a></td>"
        f"<td>{html.escape(doc.get('info', {}).get('description', ''))}</td>"
        f"<td><a href='/{html.escape(name)}.json'>{html.escape(name)}.json</a></td></tr>"
        for name, doc in documents.items()
    )
    return _page(
        "PIMMS AsyncAPI",
        "<h1>PIMMS: what each service reads and writes</h1>"
        "<table><tr><th>service</th><th>what it does</th><th>AsyncAPI 3</th></tr>"
        f"{rows}</table>",
    )


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return _resolve(doc, node["$ref"])
    return node if isinstance(node, dict) else {}


def render_document(name: str, doc: dict[str, Any]) -> str:
    """One service's document as tables: servers, then each operation with its messages."""
    e = html.escape
    servers = "".join(
        f"<tr><td>{e(key)}</td><td>{e(s.get('protocol', ''))}</td><td><code>{e(s.get('host', ''))}"
        f"</code></td><td>{e(s.get('description', ''))}</td></tr>"
        for key, s in doc.get("servers", {}).items()
    )
    operations = []
    for operation in doc.get("operations", {}).values():
        channel = _resolve(doc, operation.get("channel", {}).get("$ref", ""))
        messages = [_resolve(doc, m.get("$ref", "")) for m in operation.get("messages", [])]
        listed = "<br>".join(
            f"<code>{e(m.get('name', ''))}</code> {e(m.get('summary', ''))}" for m in messages
        )
        operations.append(
            (
                channel.get("address", ""),
                f"<tr><td>{e(operation.get('action', ''))}</td>"
                f"<td><code>{e(channel.get('address', ''))}</code><br>"
                f"{e(channel.get('description', ''))}</td><td>{listed}</td></tr>",
            )
        )
    rows = "".join(row for _, row in sorted(operations))
    info = doc.get("info", {})
    return _page(
        f"PIMMS {name}",
        f"<p><a href='/'>all services</a> · <a href='/{e(name)}.json'>{e(name)}.json</a></p>"
        f"<h1>{e(info.get('title', name))} <small>{e(info.get('version', ''))}</small></h1>"
        f"<p>{e(info.get('description', ''))}</p><h2>Servers</h2><table><tr><th>name</th>"
        f"<th>protocol</th><th>host</th><th></th></tr>{servers}</table><h2>Operations</h2>"
        "<table><tr><th>action</th><th>channel</th><th>messages</th></tr>"
        f"{rows}</table>",
    )


def make_server(directory: Path, *, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for the documents of `directory` (port 0: any free port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            documents = load_documents(directory)  # re-read: `make asyncapi` shows at once
            path = self.path.split("?", 1)[0].strip("/")
            name, _, suffix = path.rpartition(".")
            if path in {"", "index.html"}:
                self._send(render_index(documents), "text/html; charset=utf-8")
            elif suffix == "json" and name in documents:
                self._send(json.dumps(documents[name], indent=2), "application/json")
            elif suffix == "html" and name in documents:
                self._send(render_document(name, documents[name]), "text/html; charset=utf-8")
            else:
                self._send("not found", "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)

        def _send(self, body: str, content_type: str, status: int = HTTPStatus.OK) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet terminal: no request lines

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError:
        if port == 0:
            raise
        return ThreadingHTTPServer((host, 0), Handler)  # the default port is taken: any free one


def run_docs(*, port: int, host: str = "127.0.0.1", directory: Path | None = None) -> int:
    """Serve until Ctrl-C; print the URL first."""
    where = directory or documents_dir()
    documents = load_documents(where)
    if not documents:
        print(f"pimms docs: no AsyncAPI document in {where} (run `make asyncapi`)", flush=True)
        return 1
    server = make_server(where, host=host, port=port)
    bound = server.server_address[1]
    print(
        f"AsyncAPI documents of {', '.join(documents)} at http://{host}:{bound}/ (Ctrl-C stops)",
        flush=True,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with contextlib.suppress(KeyboardInterrupt):
        thread.join()
    server.shutdown()
    server.server_close()
    return 0
