"""What the hub benchmarks share: N generated IAM users, a dev IAM + hub on free loopback ports with an admin
service (devstack.stack's `login` profile), browser-style logins, the machine's description, and CPU/memory readings
of the hub's process tree. Driving the hub (logins, servers, their environment) is devstack.hub_client."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from devstack.hub import LocalHub
from devstack.hub_client import admin_service, hub_login, service_session
from devstack.iam import DevIAM
from devstack.settings import REPO, Settings
from devstack.stack import Stack, temporary_state


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


#: A block of the "Current results" section of docs/benchmarks.md: the latest run of exactly this command.
CURRENT_START = "<!-- current: {command} -->\n"
CURRENT_END = "<!-- /current -->"


def append_results(title: str, description: str, table: str, after: str = "") -> Path:
    """Record a benchmark's table in docs/benchmarks.md (or $DLAAS_BENCH_RESULTS) with the date, the commit, the
    machine and the exact command that produced it (this process's own arguments).

    Every run is appended to the history, at the end of the file. When the "Current results" section at the top has
    a block for exactly this command (between `<!-- current: COMMAND -->` and `<!-- /current -->`), the run also
    replaces that block, so each reference command's latest figure stays on top; runs of other commands (smaller
    variants, baselines) go to the history only. A new reference command gets its block by hand, once."""
    results = Path(os.environ.get("DLAAS_BENCH_RESULTS") or REPO / "docs" / "benchmarks.md")
    rev = (
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        or "unknown"
    )
    command = shlex.join([".venvs/main/bin/python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    section = (
        f"### {title} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {rev})\n\n"
        f"Machine: {machine()}. {description}\nCommand: `{command}`\n\n{table}\n" + (f"\n{after}\n" if after else "")
    )
    text = results.read_text() if results.exists() else ""
    start = CURRENT_START.format(command=command)
    head, found, rest = text.partition(start)
    _, end, tail = rest.partition(CURRENT_END)
    if found and end:
        text = f"{head}{start}{section}\n{end}{tail}"
    partial = results.with_name(f".{results.name}.partial")
    partial.write_text(f"{text}\n{section}")
    partial.replace(results)
    return results


TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 14 of proc(5), utime, is index 11)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def own_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (not its children); 0 for a process that is gone."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and resident memory (bytes) of a process and its direct children (from /proc); the CPU includes
    the children they already reaped (a first login's onboarding process, for one)."""
    cpu, rss = 0.0, 0
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(c) for c in child.read_text().split()]
    for p in pids:
        try:
            fields = proc_stat(p)
            cpu += sum(int(f) for f in fields[11:15]) / TICKS
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return cpu, rss


@dataclass
class HubStack:
    settings: Settings
    iam: DevIAM
    hub: LocalHub
    admin: requests.Session
    users: list[dict]

    @property
    def api(self) -> str:
        return f"{self.hub.url}/hub/api"

    def login(self, user: dict, browser: requests.Session, timeout: float = 120) -> requests.Response:
        """The browser-style login of `user`; returns the hub's answer to the OAuth callback."""
        return hub_login(self.hub, user["username"], user["password"], browser=browser, timeout=timeout)[1]


@contextmanager
def hub_stack(
    n_users: int,
    prefix: str,
    *,
    admin_scopes: list[str],
    access_token_ttl: int = 3600,
    hub_settings: dict | None = None,
    parts: tuple[str, ...] = ("login",),
    **hub_kwargs,
) -> Iterator[HubStack]:
    """A dev IAM with `n_users` members of escape/users and a hub with an admin service, started with the stack's
    `parts` (devstack.stack profiles: with "rucio", first logins are onboarded into Rucio); all stopped at exit."""
    users = [
        {
            "username": f"{prefix}{i:04d}",
            "password": f"pw-{i}",
            "sub": str(uuid.uuid4()),
            "name": f"User {i}",
            "email": f"{prefix}{i}@example.invalid",
            "groups": ["escape/users"],
        }
        for i in range(n_users)
    ]
    extra, admin_token = admin_service("bench-admin", admin_scopes)
    with temporary_state(prefix) as state:
        (state / "users.json").write_text(json.dumps(users))
        iam_options = {"users_file": state / "users.json", "access_token_ttl": access_token_ttl}
        hub_options = {"extra": {**extra, **(hub_settings or {})}, **hub_kwargs}
        with Stack(Settings.free_ports(state), iam_options=iam_options, hub_options=hub_options) as stack:
            stack.start(*parts)
            yield HubStack(stack.settings, stack.iam, stack.hub, service_session(stack.hub, admin_token), users)
