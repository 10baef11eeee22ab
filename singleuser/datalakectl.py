"""datalakectl: send results back to the Data Lake through the scratch area, and follow the copies.

    datalakectl upload /scratch/plots --rse DESY-DCACHE --dataset higgs-plots --lifetime 30d
    datalakectl status user.alice:higgs-plots --wait

`upload` asks the registration service (its URL from the hub, authorised by this server's hub API token) to register
the files in Rucio (files outside the scratch area are first copied into a new folder of it, singleuser.scratch_copy):
the service finds them in YOUR scratch directory, checksums them itself and registers dataset,
replicas and rules owned by your account - Rucio accepts scratch registrations from that service only. `status`
reads the rules with your own Rucio token (rucio.cfg and the token file, read again at every poll: the token agent
renews it), as the hub configures this server. The settings come from singleuser.server_settings.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from singleuser import contract, durations, scratch_copy
from singleuser.server_settings import ServerSettings


def parse_duration(value: str | None) -> int | None:
    """Seconds of a duration option (singleuser.durations), None for none; click's one-line error otherwise."""
    if value in (None, "", "none"):
        return None
    try:
        return durations.parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(f"{e}, or 'none'") from None


def scratch_relative(paths, scratch: Path) -> tuple[list[str], list[Path]]:
    """PATHS inside the scratch mount as relative paths (without following links: the service refuses them
    anyway), and those outside it, which are copied in first (singleuser.scratch_copy)."""
    mount = Path(os.path.abspath(scratch))
    relative, outside = [], []
    for raw in paths:
        path = Path(os.path.abspath(os.path.expanduser(raw)))
        if not path.is_relative_to(mount):
            if not path.exists():
                raise click.ClickException(f"{raw} does not exist")
            if mount.is_relative_to(path):
                raise click.ClickException(f"{raw} contains your scratch area {mount}: name files or folders in it")
            if path.name in {p.name for p in outside}:
                raise click.ClickException(f"{raw} has the name of another path given: rename one or upload it apart")
            outside.append(path)
            continue
        rel = path.relative_to(mount).as_posix()
        relative.append(rel if rel != "." else "")
    if "" in relative:
        raise click.ClickException(f"name files or folders inside {mount}, not the whole scratch area")
    return relative, outside


def copy_in(paths: list[Path], scratch: Path) -> Path:
    """Copy files from outside into a new folder of the scratch area (a progress bar on a terminal); the folder,
    or a one-line ClickException with nothing left behind."""
    size = sum(f.stat().st_size for p in paths for f, _ in scratch_copy.sources(p) if f.is_file())
    console = Console(stderr=True)
    with Progress(
        TextColumn("copying into the scratch area"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("copy", total=size)
        try:
            return scratch_copy.stage(paths, scratch, lambda n: progress.advance(task, n))
        except scratch_copy.StagingError as e:
            raise click.ClickException(str(e)) from None


RENEWAL_GRACE = 20  # seconds `status --wait` keeps polling without a valid token while the agent may renew it


class TokenExpired(click.ClickException):
    """No valid Data Lake token: the user must log in to the hub again."""

    def __init__(self):
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/")
        public = os.environ.get("JUPYTERHUB_PUBLIC_URL", "").rstrip("/")
        where = f"{public}{base}/hub/login" if public else f"your hub's login page ({base}/hub/login)"
        super().__init__(f"your session's Data Lake token expired: log in again at {where}, then run this again")


def _token_expired(path: str | None) -> bool:
    """Whether the token file names a token that is missing or past its `exp` (Rucio checks the signature)."""
    from singleuser.token_claims import unverified_exp

    if not path:
        return False  # no token file configured: leave authentication to rucio-clients
    try:
        token = Path(path).read_text().strip()
    except OSError:
        return True  # the agent removes the file when its token expires
    exp = unverified_exp(token)
    if exp is None:
        return not token  # a token that is not a JWT (or has no `exp`): rucio-clients and Rucio judge it
    return exp <= time.time()


def _client():
    from rucio.client import Client

    return Client()


def read_rules(did: str) -> list[dict]:
    """The rules of DID, read with a new client each time, so that it reads the token file again (the token agent
    renews it); TokenExpired when there is no valid token."""
    from rucio.common.exception import CannotAuthenticate, DataIdentifierNotFound

    if _token_expired(ServerSettings().rucio_token_file):
        raise TokenExpired()
    scope, name = did.split(":")
    try:
        return rule_status(_client(), scope, name)
    except DataIdentifierNotFound:
        raise click.ClickException(f"{did} does not exist") from None
    except CannotAuthenticate:
        raise TokenExpired() from None


class Refused(click.ClickException):
    """The registration service refused the request (HTTP 4xx): it registered nothing."""


def register(request: dict) -> dict:
    """POST the upload request to the registration service; its answer, or a one-line ClickException."""
    import requests

    settings = ServerSettings()
    url, token = settings.registrar_url, settings.hub_api_token
    if not url or not token:
        raise click.ClickException(
            f"{contract.REGISTRAR_URL.name} or {contract.HUB_API_TOKEN.name} is not set: run "
            "datalakectl in a terminal of your DLaaS server"
        )
    try:
        answer = requests.post(
            url.rstrip("/") + "/api/uploads",
            json=request,
            timeout=(10, 3600),
            headers={"Authorization": f"token {token}"},
        )
    except requests.RequestException as e:
        raise click.ClickException(
            f"the registration service at {url} is unreachable ({type(e).__name__}): "
            "nothing was registered; try again in a minute"
        ) from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200:
        message = body.get("message") if isinstance(body, dict) else None
        raise (Refused if 400 <= answer.status_code < 500 else click.ClickException)(
            message or f"the registration service answered HTTP {answer.status_code}; nothing was registered"
        )
    return body


@click.group()
@click.option(
    "--scratch",
    default=lambda: ServerSettings().scratch_mount,
    show_default=f"${contract.SCRATCH_MOUNT.name} or {contract.SCRATCH_MOUNT.default}",
    help="Where your scratch directory is mounted in this server.",
)
@click.option(
    "--scratch-rse",
    default=lambda: ServerSettings().scratch_rse,
    show_default=f"${contract.SCRATCH_RSE.name} or {contract.SCRATCH_RSE.default}",
    help="The RSE backing the scratch area.",
)
@click.pass_context
def cli(ctx, scratch, scratch_rse):
    """Send files from the scratch area to the Data Lake through Rucio (third-party copy)."""
    ctx.obj = {"scratch": scratch, "scratch_rse": scratch_rse}


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--rse", "destination", required=True, help="Destination RSE, e.g. DESY-DCACHE.")
@click.option("--scope", default=None, help="Scope of the new DIDs [default: user.<your account>].")
@click.option("--dataset", default=None, help="Dataset collecting the files [default: upload].")
@click.option("--lifetime", default=None, help="Lifetime of the copy at the destination (e.g. 30d; default none).")
@click.option(
    "--scratch-lifetime",
    default="1h",
    show_default=True,
    help="How long the scratch copy is kept for the transfer before it may be deleted.",
)
@click.option("--name-prefix", default="", help="Prefix for the DID names (the file names by default).")
@click.option("--dry-run", is_flag=True, help="Check and show what would be registered; register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def upload(ctx, paths, destination, scope, dataset, lifetime, scratch_lifetime, name_prefix, dry_run, as_json):
    """Register PATHS (files, folders) and replicate them to --rse.

    Paths outside your scratch area (your home, say) are copied into a new folder of it first."""
    scratch = Path(os.path.abspath(ctx.obj["scratch"]))
    relative, outside = scratch_relative(paths, scratch)
    staged = copy_in(outside, scratch) if outside else None
    if staged:
        relative += [f"{staged.name}/{p.name}" for p in outside]
    request = {
        "paths": relative,
        "destination_rse": destination,
        "scope": scope,
        "dataset": dataset,
        "lifetime": parse_duration(lifetime),
        "scratch_lifetime": parse_duration(scratch_lifetime) or 3600,
        "name_prefix": name_prefix,
        "dry_run": dry_run,
    }
    try:
        with Console(stderr=True).status("checking files, computing checksums and registering"):
            plan = register(request)
    except Refused:
        if staged:
            shutil.rmtree(staged, ignore_errors=True)
        raise
    except click.ClickException as e:
        if staged:  # some files may be registered with their copy there: keep it for a re-run
            e.message += f" (the copies are in {staged}: upload that folder to try again)"
        raise
    if staged and dry_run:
        shutil.rmtree(staged, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    table = Table(
        title=f"{plan['scope']}:{plan['dataset']} -> {plan['destination_rse']}" + (" (dry run)" if dry_run else "")
    )
    for column in ("file", "DID", "bytes", "adler32", "state"):
        table.add_column(column)
    for f in plan["files"]:
        table.add_row(
            f["path"],
            f"{f['scope']}:{f['name']}",
            str(f["bytes"]),
            f["adler32"],
            "would register" if dry_run and f["state"] == "new" else f["state"],
        )
    Console().print(table)
    if not dry_run:
        click.echo(f"follow the copy with: datalakectl status {plan['scope']}:{plan['dataset']} --wait")


def rule_status(client, scope: str, dataset: str) -> list[dict]:
    """The dataset's rules with their progress (locks OK / replicating / stuck)."""
    return [
        {
            "id": r["id"],
            "rse_expression": r["rse_expression"],
            "state": r["state"],
            "ok": r["locks_ok_cnt"],
            "replicating": r["locks_replicating_cnt"],
            "stuck": r["locks_stuck_cnt"],
            "expires_at": str(r["expires_at"]) if r.get("expires_at") else None,
        }
        for r in client.list_did_rules(scope, dataset)
    ]


@cli.command()
@click.argument("did")
@click.option("--wait", is_flag=True, help="Follow the rules until every one is OK (or stuck).")
@click.option("--timeout", default="1h", show_default=True, help="Give up waiting after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
@click.pass_context
def status(ctx, did, wait, timeout, as_json):
    """Show the rules of an uploaded dataset DID (scope:name), optionally until they are OK."""
    if did.count(":") != 1:
        raise click.BadParameter(f"{did!r}: give the dataset as scope:name")
    rules = read_rules(did)
    if wait:
        deadline = time.monotonic() + (parse_duration(timeout) or 3600)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=as_json,
        ) as progress:
            tasks = {r["id"]: progress.add_task(r["rse_expression"], total=None) for r in rules}
            expired_since = None
            while True:
                for r in rules:
                    total = r["ok"] + r["replicating"] + r["stuck"]
                    progress.update(
                        tasks[r["id"]],
                        completed=r["ok"],
                        total=total or None,
                        description=f"{r['rse_expression']} {r['state']}",
                    )
                if all(r["state"] in ("OK", "STUCK") for r in rules) or time.monotonic() > deadline:
                    break
                time.sleep(2)
                try:
                    rules = read_rules(did)
                    expired_since = None
                except TokenExpired:
                    # The agent renews the token file before expiry; give it a moment before giving up.
                    expired_since = expired_since or time.monotonic()
                    if time.monotonic() - expired_since > RENEWAL_GRACE:
                        raise
    if as_json:
        click.echo(json.dumps(rules, indent=2))
    else:
        table = Table(title=did)
        for column in ("rule", "RSE", "state", "ok", "replicating", "stuck", "expires"):
            table.add_column(column)
        for r in rules:
            table.add_row(
                r["id"],
                r["rse_expression"],
                r["state"],
                str(r["ok"]),
                str(r["replicating"]),
                str(r["stuck"]),
                r["expires_at"] or "-",
            )
        Console().print(table)
    if wait and not all(r["state"] == "OK" for r in rules if r["rse_expression"] != ctx.obj["scratch_rse"]):
        sys.exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
