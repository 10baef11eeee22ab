"""A sample CRIC for the local data lake: serves the storage catalogue the XCache origin sync reads.

CRIC is the Data Lake's catalogue of sites and storage endpoints. Locally, the catalogue is a JSON file written from
the Rucio server's own RSEs and protocols (so it names the real local origin), served on 127.0.0.1 at CRIC's path
`/api/doma/rse/query/?json&preset=doma`. The file is read on every request: edit it (or let a test do so) to see the
sync follow. `python -m devstack.cric --port P --file F` runs the server; `CatalogueService` runs it for the stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devstack.ports import ensure_port_free, free_port, http_ready
from devstack.procs import Process
from devstack.service import Service
from devstack.settings import REPO, Settings
from dlaas_fs.atomic import write_atomically

QUERY_PATH = "/api/doma/rse/query/"


def catalogue_from_rucio(client) -> dict:
    """CRIC's doma preset, built from what the Rucio server knows: RSE names and their protocols."""
    rses = {}
    for rse in sorted(r["rse"] for r in client.list_rses()):
        protocols = [
            {
                "name": f"{p['scheme']}-{rse}",
                "scheme": p["scheme"],
                "hostname": p["hostname"],
                "port": p["port"],
                "prefix": p["prefix"],
                "impl": p["impl"],
            }
            for p in client.get_protocols(rse)
        ]
        rses[rse] = {"name": rse, "rse_type": "DISK", "protocols": protocols}
    return {"rses": rses}


def write_catalogue(path: Path, catalogue: dict) -> None:
    write_atomically(path, json.dumps(catalogue, indent=2, sort_keys=True), mode=0o644, dir_mode=0o755)


def serve(port: int, file: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] != QUERY_PATH:
                self.send_error(404, "only the RSE query is served here")
                return
            try:
                body = file.read_bytes()
            except OSError:
                self.send_error(503, "no catalogue yet")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stderr.write("cric: " + fmt % args + "\n")

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class CatalogueService(Service):
    def __init__(self, settings: Settings, port: int | None = None):
        self.settings = settings
        port = settings.cric_port if port is None else port
        self.port = port or free_port()
        self.file = settings.state_dir / "cric" / "rses.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{QUERY_PATH}?json&preset=doma"

    def start(self) -> CatalogueService:
        ensure_port_free("127.0.0.1", self.port, "the sample CRIC", "DLAAS_CRIC_PORT")
        self.process = Process(
            "cric",
            [sys.executable, "-m", "devstack.cric", "--port", self.port, "--file", self.file],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=http_ready(f"http://127.0.0.1:{self.port}/"),
            cwd=REPO,
            timeout=20,
        ).start()
        return self


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.cric", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", type=Path, required=True, help="the catalogue (JSON), read on every request")
    args = p.parse_args(argv)
    serve(args.port, args.file)


if __name__ == "__main__":
    main()
