"""Addresses, ports and directories of the local data lake, each overridable by environment.

Defaults are the addresses README.md lists for the local data lake. Tests build their own `Settings` with free
ports and a temporary state directory, so the same code serves `make up` and the integration fixtures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".venvs"
MAIN_PYTHON = VENVS / "main" / "bin" / "python"
RUCIO_PYTHON = VENVS / "rucio" / "bin" / "python"
NODE_MODULES = REPO / "devstack" / "node_modules"
TEMPLATES = REPO / "devstack" / "templates"  # static configuration files, filled in at run time


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a port number: set it to an integer such as {default}") from None
    if not 0 <= port <= 65535:
        raise SystemExit(f"{name}={port} is out of range: use a port between 1 and 65535")
    return port


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name) or default
    if raw not in choices:
        raise SystemExit(f"{name}={raw!r} is not one of {', '.join(choices)}: set it to one of them")
    return raw


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise SystemExit(f"{name}={raw!r} is not a yes/no value: set it to true or false")
    return raw.lower() in ("1", "true", "yes")


def _env_delay(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        delay = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number of milliseconds: set it to e.g. 25") from None
    if delay < 0:
        raise SystemExit(f"{name}={delay} is negative: use 0 (no delay) or more")
    return delay


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("DLAAS_STATE_DIR", REPO / ".devstack")))
    host: str = "127.0.0.1"
    hub_port: int = field(default_factory=lambda: _env_int("DLAAS_HUB_PORT", 8000))
    iam_port: int = field(default_factory=lambda: _env_int("DLAAS_IAM_PORT", 8085))
    rucio_port: int = field(default_factory=lambda: _env_int("DLAAS_RUCIO_PORT", 8091))
    postgres_port: int = field(default_factory=lambda: _env_int("DLAAS_POSTGRES_PORT", 8092))
    xrootd_port: int = field(default_factory=lambda: _env_int("DLAAS_XROOTD_PORT", 1094))
    xcache_port: int = field(default_factory=lambda: _env_int("DLAAS_XCACHE_PORT", 1095))
    # The XCache exporter's /metrics (dlaas_xcache.exporter): known before the cache starts, for the hub's status page.
    xcache_metrics_port: int = field(default_factory=lambda: _env_int("DLAAS_XCACHE_METRICS_PORT", 9932))
    cric_port: int = field(default_factory=lambda: _env_int("DLAAS_CRIC_PORT", 8093))
    registrar_port: int = field(default_factory=lambda: _env_int("DLAAS_REGISTRAR_PORT", 8094))
    # Dask Gateway's public port (API, dashboards, schedulers' TLS traffic), loopback only (devstack.dask_gateway).
    dask_gateway_port: int = field(default_factory=lambda: _env_int("DLAAS_DASK_GATEWAY_PORT", 8095))
    # The local Prometheus (devstack.prometheus), loopback only.
    prometheus_port: int = field(default_factory=lambda: _env_int("DLAAS_PROMETHEUS_PORT", 9090))
    # How the dev IAM shapes tokens, as an INDIGO IAM instance may be set up: its token profile (`iam`: groups in
    # `groups`; `wlcg`: only `wlcg.groups`), whether each refresh rotates the refresh token (on: IAM clients may),
    # and whether access tokens carry `scope` (IAM's default profile does not; Rucio then introspects them).
    iam_profile: str = field(default_factory=lambda: _env_choice("DLAAS_IAM_PROFILE", "iam", ("iam", "wlcg")))
    iam_rotate_refresh_tokens: bool = field(default_factory=lambda: _env_bool("DLAAS_IAM_ROTATE_REFRESH", True))
    iam_scope_claim: bool = field(default_factory=lambda: _env_bool("DLAAS_IAM_SCOPE_CLAIM", True))
    # One-way delay (ms) injected in front of the XRootD origin, as if the storage were far away.
    origin_delay_ms: float = field(default_factory=lambda: _env_delay("DLAAS_ORIGIN_DELAY_MS", 0.0))

    @classmethod
    def free_ports(cls, state_dir: Path, **changes) -> Settings:
        """Settings for a private local data lake (tests, benchmarks) in `state_dir`, on free loopback ports.

        Services that bind port 0 and report the port they got, or take a free one as they start (IAM, PostgreSQL,
        Rucio, the sample CRIC, Prometheus), get 0. The others get a free port now, because another service must
        know it before they start: the hub's is in its IAM client's redirect URI, XRootD's two are registered by the
        Rucio seed, the XCache exporter's is on the hub's status page, the registration service's is in the hub's
        list of services. `changes` override any field (e.g. a fixed `iam_port` for a hub that starts while the IAM
        is down, or the IAM's token profile).
        """
        from devstack.ports import free_port

        ports = dict(iam_port=0, rucio_port=0, postgres_port=0, cric_port=0, prometheus_port=0)
        for name in (
            "hub_port",
            "xrootd_port",
            "xcache_port",
            "xcache_metrics_port",
            "registrar_port",
            "dask_gateway_port",
        ):
            if name not in changes:
                ports[name] = free_port()
        return cls(state_dir=Path(state_dir), **{**ports, **changes})

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def iam_url(self) -> str:
        return f"http://{self.host}:{self.iam_port}"

    @property
    def iam_issuer(self) -> str:
        # INDIGO IAM's issuer ends with a slash, and Rucio compares `iss` exactly.
        return f"{self.iam_url}/"

    @property
    def rucio_url(self) -> str:
        return f"http://{self.host}:{self.rucio_port}"

    @property
    def hub_url(self) -> str:
        return f"http://{self.host}:{self.hub_port}"

    @property
    def registrar_url(self) -> str:
        return f"http://{self.host}:{self.registrar_port}"

    @property
    def dask_gateway_url(self) -> str:
        return f"http://{self.host}:{self.dask_gateway_port}"
