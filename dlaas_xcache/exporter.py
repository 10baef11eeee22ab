"""dlaas-xcache-exporter: the XCache's own monitoring (XRootD's UDP reports) as Prometheus metrics.

XRootD sends its monitoring over UDP; this exporter runs next to the cache (a sidecar in the cache's pod, sharing
its loopback), receives both streams on one loopback port and serves their sum as Prometheus metrics:

- the proxy file cache's g-stream (`xrootd.mongstream pfc ... send json`): one JSON record per closed file with
  the bytes the cache served from its disk (`b_hit`), fetched for the read (`b_miss`) or passed through
  (`b_bypass`), and the origins contacted during that access (`remotes`). XRootD 5.5.3 counts the cache's work
  here only - the `cache` block of its summary report stays at zero - so the hit ratio comes from this stream;
- the summary report (`xrd.report ... all`): XML every N seconds with cumulative counters since xrootd started;
  the exporter takes the bytes to and from clients, the open connections and the opens towards origins (with their
  errors). Restarts of xrootd (a new allow-list restarts it) are noticed by its start time, and the exporter's
  counters keep growing across them.

The xrootd configuration lines (`cache_directives`), before any `continue` line (xrootd reads nothing of a file
after its `continue`):

    xrd.report 127.0.0.1:9931 every 10s all
    xrootd.mongstream pfc use flush 10s send json 127.0.0.1:9931

Datagrams from anywhere but loopback are dropped. No label holds a path, a user or a host: the hit ratio is the
cache's, not a file's. The metrics endpoint answers without authentication (aggregate counts only); the cache's
NetworkPolicy must admit only the monitoring namespace to its port.

    dlaas-xcache-exporter --udp 127.0.0.1:9931 --listen 0.0.0.0:9932 [--status-file F]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from dlaas_fs.atomic import write_atomically

PROG = "dlaas-xcache-exporter"
MAX_DATAGRAM = 65536


def cache_directives(udp: str, every: int = 10) -> list[str]:
    """The xrootd configuration lines that send the cache's reports to an exporter at `udp` (host:port)."""
    return [f"xrd.report {udp} every {every}s all", f"xrootd.mongstream pfc use flush {every}s send json {udp}"]


def _number(element: ET.Element | None, path: str) -> float | None:
    found = element.find(path) if element is not None else None
    if found is None or found.text is None:
        return None
    try:
        return float(found.text.strip().rstrip(">"))  # XRootD 5.5.3 writes `<hits>0></hits>` in its cache block
    except ValueError:
        return None


class CacheMetrics:
    """The exporter's registry and what each datagram adds to it."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.bytes = Counter(
            "dlaas_xcache_bytes", "Bytes read by clients, by where the cache had them.", ["source"], registry=r
        )
        self.accesses = Counter(
            "dlaas_xcache_accesses",
            "File accesses that ended (closed), by whether an origin was contacted during the access.",
            ["served_from"],
            registry=r,
        )
        self.checksum_errors = Counter(
            "dlaas_xcache_checksum_errors", "Checksum errors on blocks fetched from origins.", registry=r
        )
        self.client_bytes = Counter(
            "dlaas_xcache_client_bytes", "Bytes received from and sent to clients.", ["direction"], registry=r
        )
        self.connections = Gauge("dlaas_xcache_client_connections", "Client connections open now.", registry=r)
        self.origin_opens = Counter("dlaas_xcache_origin_opens", "Files opened at origins.", registry=r)
        self.origin_errors = Counter(
            "dlaas_xcache_origin_open_errors", "Failed opens at origins (origin down, file missing).", registry=r
        )
        self.reports = Counter("dlaas_xcache_reports", "Datagrams received, by kind.", ["kind"], registry=r)
        self.last_report = Gauge(
            "dlaas_xcache_last_report_timestamp_seconds",
            "When the last report of a kind arrived.",
            ["kind"],
            registry=r,
        )
        for source in ("hit", "miss", "bypass"):
            self.bytes.labels(source)
        for served in ("cache", "origin"):
            self.accesses.labels(served)
        for direction in ("in", "out"):
            self.client_bytes.labels(direction)
        for kind in ("summary", "gstream", "invalid"):
            self.reports.labels(kind)
        self._summaries: dict[str, tuple[str, dict[str, float]]] = {}  # src -> (start id, cumulative values)
        self._lock = threading.Lock()

    def feed(self, data: bytes, sender: str = "127.0.0.1") -> str:
        """Count one datagram; returns its kind (summary, gstream or invalid)."""
        with self._lock:
            kind = self._kind(data, sender)
            self.reports.labels(kind).inc()
            if kind != "invalid":
                self.last_report.labels(kind).set(time.time())
            return kind

    def _kind(self, data: bytes, sender: str) -> str:
        try:
            if not ipaddress.ip_address(sender).is_loopback:
                return "invalid"
        except ValueError:
            return "invalid"
        body = data.rstrip(b"\0").strip()
        if body.startswith(b"<statistics"):
            return "summary" if self._summary(body) else "invalid"
        if body.startswith(b"{"):
            return "gstream" if self._gstream(body) else "invalid"
        return "invalid"

    def _gstream(self, body: bytes) -> bool:
        try:
            records = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        except (UnicodeDecodeError, ValueError):
            return False
        for record in records:
            if not isinstance(record, dict) or record.get("event") != "file_close":
                continue  # the stream's header, other events
            try:
                hit, miss, bypass = (max(0.0, float(record.get(k, 0))) for k in ("b_hit", "b_miss", "b_bypass"))
                errors = max(0.0, float(record.get("n_cks_errs", 0)))
            except (TypeError, ValueError):
                continue
            self.bytes.labels("hit").inc(hit)
            self.bytes.labels("miss").inc(miss)
            self.bytes.labels("bypass").inc(bypass)
            self.checksum_errors.inc(errors)
            self.accesses.labels("origin" if record.get("remotes") else "cache").inc()
        return True

    def _summary(self, body: bytes) -> bool:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return False
        stats = {s.get("id"): s for s in root.iter("stats") if s.get("id")}
        link, pss = stats.get("link"), stats.get("pss")
        values = {
            "in": _number(link, "in"),
            "out": _number(link, "out"),
            "opens": _number(pss, "open"),
            "open_errors": _number(pss, "open/errs"),
        }
        values = {k: v for k, v in values.items() if v is not None}
        connections = _number(link, "num")
        if connections is not None:
            self.connections.set(connections)
        src, start = root.get("src", ""), f"{root.get('pid')}/{root.get('tos')}"
        seen_start, before = self._summaries.get(src, (start, {}))
        if seen_start != start:
            before = {}  # xrootd restarted: its counters start again from zero
        for key, value in values.items():
            delta = value - before.get(key, 0.0)
            if delta < 0:
                delta = value
            if key in ("in", "out"):
                self.client_bytes.labels(key).inc(delta)
            elif key == "opens":
                self.origin_opens.inc(delta)
            else:
                self.origin_errors.inc(delta)
        self._summaries[src] = (start, {**before, **values})
        return True


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port, e.g. 127.0.0.1:9931")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--udp",
        type=_address,
        default=("127.0.0.1", 9931),
        help="where xrootd sends its reports (host:port, port 0: any; default 127.0.0.1:9931)",
    )
    p.add_argument(
        "--listen",
        type=_address,
        default=("127.0.0.1", 9932),
        help="where Prometheus reads /metrics (host:port, port 0: any; default 127.0.0.1:9932)",
    )
    p.add_argument("--status-file", help="written (atomically) once both ports are open: their numbers, as JSON")
    args = p.parse_args(argv)

    metrics = CacheMetrics()
    udp = socket.socket(socket.AF_INET6 if ":" in args.udp[0] else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(args.udp)
        httpd, _ = start_http_server(args.listen[1], args.listen[0], registry=metrics.registry)
    except OSError as e:
        print(f"{PROG}: cannot listen ({e.strerror}): choose other --udp/--listen addresses", file=sys.stderr)
        return 1
    udp.settimeout(0.5)
    ports = {"udp_port": udp.getsockname()[1], "http_port": httpd.server_address[1], "pid": os.getpid()}
    if args.status_file:
        write_atomically(args.status_file, json.dumps(ports), mode=0o644)
    print(f"{PROG}: reports on udp {ports['udp_port']}, metrics on http {ports['http_port']}", flush=True)
    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    try:
        while not stop:
            try:
                data, sender = udp.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            metrics.feed(data, sender[0])
    finally:
        httpd.shutdown()
        udp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
