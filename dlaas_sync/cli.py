"""The `dlaas-rucio-sync` command: options (or environment) -> SyncConfig -> one run, its report and exit code.

    dlaas-rucio-sync --iam-url https://iam.example.org/ --client-id dlaas-account-sync \\
        --client-secret-file /etc/dlaas-sync/client-secret --group escape/users \\
        --limit DLAAS-SCRATCH=100GB --limit EULAKE-1=1TB [--max-changes 10] [--dry-run] [--user NAME | --sub ID]

Rucio is reached as rucio-clients' configuration says (RUCIO_CONFIG: host, account allowed to manage accounts,
credentials). The IAM client secret comes from a file (--client-secret-file, DLAAS_SYNC_CLIENT_SECRET_FILE) or
from DLAAS_SYNC_CLIENT_SECRET; never from the command line, where every process could read it. Changes go to
stdout, one per line (`+` added, `~` changed, `-` removed or suspended, `!` refused), then one summary line; errors
are one line on stderr. Exit: 0 done, 1 refused or failed, 2 bad options, 3 done but some IAM users refused.
A full run also writes its metrics to --metrics-file (DLAAS_SYNC_METRICS_FILE) when given (dlaas_sync.metrics_file).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from dlaas_sync import SUB
from dlaas_sync.rucio_side import one_line
from dlaas_sync.scim import ScimClient
from dlaas_sync.sync import DEFAULT_GROUPS, Report, SyncConfig, rucio_client, sync_all, sync_user

PROG = "dlaas-rucio-sync"
UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
    "PIB": 2**50,
}
SIZE = re.compile(r"(\d+)\s*([A-Za-z]*)")
RSE = re.compile(r"[A-Z0-9_-]{1,255}", re.IGNORECASE)


def parse_size(text: str) -> int:
    m = SIZE.fullmatch(text.strip())
    if not m or m.group(2).upper() not in UNITS:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with a unit, e.g. 100GB or 1TiB")
    return int(m.group(1)) * UNITS[m.group(2).upper()]


def parse_limit(text: str) -> tuple[str, int]:
    rse, sep, size = text.partition("=")
    if not sep or not RSE.fullmatch(rse):
        raise argparse.ArgumentTypeError(f"{text!r} is not RSE=SIZE, e.g. DLAAS-SCRATCH=100GB")
    try:
        return rse, parse_size(size)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Give the members of IAM groups Rucio accounts (identity, scope, e-mail, quotas); suspend those "
        "who left. Rucio is reached as RUCIO_CONFIG says. Exit: 0 done, 1 refused or failed, 2 bad options, "
        "3 done but some IAM users refused.",
    )
    p.add_argument("--iam-url", default=env("DLAAS_SYNC_IAM_URL"), help="the IAM's issuer URL (env DLAAS_SYNC_IAM_URL)")
    p.add_argument(
        "--client-id",
        default=env("DLAAS_SYNC_CLIENT_ID"),
        help="IAM client with the client_credentials grant and scope scim:read (env DLAAS_SYNC_CLIENT_ID)",
    )
    p.add_argument(
        "--client-secret-file",
        default=env("DLAAS_SYNC_CLIENT_SECRET_FILE"),
        help="file holding the client's secret (env DLAAS_SYNC_CLIENT_SECRET_FILE; or the secret itself "
        "in DLAAS_SYNC_CLIENT_SECRET)",
    )
    p.add_argument(
        "--group",
        action="append",
        dest="groups",
        metavar="GROUP",
        help=f"IAM group whose members get accounts, repeatable (default: {', '.join(DEFAULT_GROUPS)})",
    )
    p.add_argument(
        "--limit",
        action="append",
        type=parse_limit,
        default=[],
        metavar="RSE=SIZE",
        help="quota of every synced account on an RSE where it has none, repeatable (e.g. "
        "DLAAS-SCRATCH=100GB); limits set before are left as they are",
    )
    p.add_argument(
        "--max-changes",
        type=int,
        default=10,
        metavar="N",
        help="refuse a run that would suspend more than N accounts (default: %(default)s)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="NAME", help="sync this IAM user only (userName, or the hub's username)")
    who.add_argument("--sub", metavar="ID", help="sync the IAM user with this id (her tokens' sub) only")
    who.add_argument(
        "--serve",
        action="store_true",
        help="the hub's onboarding worker: read IAM user ids (subs) from stdin, one per line, sync each as --sub "
        "does and answer each with one JSON line on stdout; ends at the end of stdin (hub_plugins.onboarding)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for IAM (default: %(default)s)")
    p.add_argument(
        "--metrics-file",
        default=env("DLAAS_SYNC_METRICS_FILE"),
        metavar="PATH",
        help="after a full run (not --dry-run, --user, --sub), write its metrics there in Prometheus' text format, "
        "e.g. into node-exporter's textfile directory (env DLAAS_SYNC_METRICS_FILE)",
    )
    return p


def config_from(args, p: argparse.ArgumentParser) -> SyncConfig:
    if not args.iam_url or not args.client_id:
        p.error("give --iam-url and --client-id (or DLAAS_SYNC_IAM_URL and DLAAS_SYNC_CLIENT_ID)")
    if args.client_secret_file:
        try:
            secret = Path(args.client_secret_file).read_text().strip()
        except OSError as e:
            p.error(f"cannot read the client secret from {args.client_secret_file}: {e.strerror}")
    else:
        secret = os.environ.get("DLAAS_SYNC_CLIENT_SECRET", "").strip()
    if not secret:
        p.error("the IAM client secret is empty: give --client-secret-file (or DLAAS_SYNC_CLIENT_SECRET)")
    if args.max_changes < 0:
        p.error("--max-changes must be 0 or more")
    limits = dict(args.limit)
    if len(limits) != len(args.limit):
        p.error("an RSE appears in two --limit options")
    return SyncConfig(
        iam_url=args.iam_url,
        client_id=args.client_id,
        client_secret=secret,
        groups=tuple(args.groups or DEFAULT_GROUPS),
        limits=limits,
        max_changes=args.max_changes,
        timeout=args.timeout,
    )


def serve(config: SyncConfig, requests: Iterable[str], answers: TextIO, *, sync=sync_user, workers: int = 4) -> int:
    """Sync one IAM user per line of `requests` (her sub), answering each with one JSON line on `answers`:
    {"sub", "exit" (the exit status --sub would give), "line" (its last line: the summary or the error),
    "account" (her account once ready, else null)}. Up to `workers` users at once (as many first logins at once ran
    a process each before), so a slow one does not hold up the others; answers name their sub and may come in
    another order. Each worker thread keeps its IAM client token, IAM's discovery and its Rucio client from one
    user to the next, which is what makes a first login cheap; a Rucio client that failed is made again for the
    next user. Errors also go to stderr, as for --sub. Returns at the end of `requests`, once all are answered."""
    clients = _Clients()
    written = threading.Lock()

    def answer(sub: str) -> None:
        if not SUB.fullmatch(sub):
            said = {"sub": sub[:255], "exit": 2, "line": "not an IAM user id", "account": None}
        else:
            try:
                if clients.scim is None:
                    clients.scim = ScimClient(
                        config.iam_url, config.client_id, config.client_secret, timeout=config.timeout
                    )
                report, clients.rucio = _serve_one(config, sub, sync, clients.scim, clients.rucio)
            except Exception as e:  # never a user left without an answer
                report, clients.rucio = Report(error=one_line(e)), None
            if report.error:
                print(f"{PROG}: error: {report.error}", file=sys.stderr, flush=True)
            line = report.error or (report.lines() or [""])[-1]
            said = {"sub": sub, "exit": report.exit_code, "line": line, "account": report.account}
        with written:
            answers.write(json.dumps(said) + "\n")
            answers.flush()

    with ThreadPoolExecutor(workers, thread_name_prefix="onboarding") as pool:
        for request in requests:
            pool.submit(answer, request.strip())
    return 0


class _Clients(threading.local):
    """Each worker thread's own IAM (SCIM) and Rucio clients, kept from one user to the next."""

    scim: ScimClient | None = None
    rucio = None


def _serve_one(config: SyncConfig, sub: str, sync, scim: ScimClient, rucio) -> tuple[Report, object]:
    """One user's sync with the kept clients: its report, and the Rucio client to keep (None after an error,
    so that the next user gets a new one)."""
    try:
        rucio = rucio if rucio is not None else rucio_client()
    except Exception as e:  # Rucio unreachable: this user's answer says so, the next one tries again
        return Report(error=f"Rucio: {one_line(e)}"), None
    report = sync(config, sub=sub, rucio=rucio, scim=scim)
    return report, (None if report.error else rucio)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    config = config_from(args, p)
    if args.serve:
        if args.dry_run:
            p.error("--serve makes the changes: leave out --dry-run")
        return serve(config, sys.stdin, sys.stdout)
    started = time.time()
    if args.user or args.sub:
        report = sync_user(config, username=args.user, sub=args.sub, dry_run=args.dry_run)
    else:
        report = sync_all(config, dry_run=args.dry_run)
    for line in report.lines():
        print(line, flush=True)
    if report.error:
        print(f"{PROG}: error: {report.error}", file=sys.stderr, flush=True)
    if args.metrics_file and not (args.user or args.sub or args.dry_run):
        from dlaas_sync import metrics_file

        try:
            metrics_file.write(args.metrics_file, report, started=started, finished=time.time())
        except OSError as e:  # the sync itself is done: say so, keep its exit status
            print(f"{PROG}: cannot write the metrics file {args.metrics_file}: {e.strerror}", file=sys.stderr)
    return report.exit_code
