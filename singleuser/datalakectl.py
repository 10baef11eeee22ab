"""datalakectl: send results from the scratch area back to the Data Lake, and follow the copies.

    datalakectl upload /scratch/plots --rse DESY-DCACHE --dataset higgs-plots --lifetime 30d
    datalakectl status user.alice:higgs-plots --wait

`upload` asks the registration service (its URL from the hub, authorised by this server's hub API token) to register
the files in Rucio: the service finds them in YOUR scratch directory, checksums them itself and registers dataset,
replicas and rules owned by your account - Rucio accepts scratch registrations from that service only. `status`
reads the rules with your own Rucio token (rucio.cfg and the token file), as the hub configures this server. The
settings come from singleuser.server_settings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from singleuser import contract, durations
from singleuser.server_settings import ServerSettings


def parse_duration(value: str | None) -> int | None:
    """Seconds of a duration option (singleuser.durations), None for none; click's one-line error otherwise."""
    if value in (None, "", "none"):
        return None
    try:
        return durations.parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(f"{e}, or 'none'") from None


def scratch_relative(paths, scratch: Path) -> list[str]:
    """PATHS as paths relative to the scratch mount (without following links: the service refuses them anyway)."""
    mount = Path(os.path.abspath(scratch))
    relative = []
    for raw in paths:
        path = Path(os.path.abspath(os.path.expanduser(raw)))
        if not path.is_relative_to(mount):
            raise click.ClickException(f"{raw} is outside your scratch area {mount}: copy it under {mount} first")
        rel = path.relative_to(mount).as_posix()
        relative.append(rel if rel != "." else "")
    if "" in relative:
        raise click.ClickException(f"name files or folders inside {mount}, not the whole scratch area")
    return relative


def _client():
    from rucio.client import Client

    return Client()


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
        raise click.ClickException(
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
    """Register PATHS (files, folders) from your scratch area and replicate them to --rse."""
    request = {
        "paths": scratch_relative(paths, Path(ctx.obj["scratch"])),
        "destination_rse": destination,
        "scope": scope,
        "dataset": dataset,
        "lifetime": parse_duration(lifetime),
        "scratch_lifetime": parse_duration(scratch_lifetime) or 3600,
        "name_prefix": name_prefix,
        "dry_run": dry_run,
    }
    with Console(stderr=True).status("checking files, computing checksums and registering"):
        plan = register(request)
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
    scope, name = did.split(":")
    client = _client()
    from rucio.common.exception import DataIdentifierNotFound

    try:
        rules = rule_status(client, scope, name)
    except DataIdentifierNotFound:
        raise click.ClickException(f"{did} does not exist") from None
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
                rules = rule_status(client, scope, name)
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
