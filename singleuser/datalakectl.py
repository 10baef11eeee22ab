"""datalakectl: send results from the scratch area back to the Data Lake, and follow the copies.

    datalakectl upload /scratch/plots --rse DESY-DCACHE --dataset higgs-plots --lifetime 30d
    datalakectl status user.alice:higgs-plots --wait

Runs inside the user's server with the Rucio settings the hub provides (RUCIO_CONFIG, BEARER_TOKEN_FILE).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from singleuser.scratch_upload import ScratchUploader, UploadError

DURATION = re.compile(r"^(\d+)([smhdw]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | None) -> int | None:
    if value in (None, "", "none"):
        return None
    match = DURATION.match(value.strip())
    if not match or int(match.group(1)) <= 0:
        raise click.BadParameter(f"{value!r}: use a positive duration such as 3600, 12h, 30d or 'none'")
    return int(match.group(1)) * UNITS[match.group(2)]


def _client():
    from rucio.client import Client

    return Client()


def _uploader(ctx) -> ScratchUploader:
    return ScratchUploader(_client(), scratch_rse=ctx.obj["scratch_rse"], scratch_mount=Path(ctx.obj["scratch"]))


@click.group()
@click.option("--scratch", envvar="DLAAS_SCRATCH_MOUNT", default="/scratch", show_default=True,
              help="Where the scratch area is mounted in this server.")
@click.option("--scratch-rse", envvar="DLAAS_SCRATCH_RSE", default="JUPYTER-SCRATCHDISK", show_default=True,
              help="The RSE backing the scratch area.")
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
@click.option("--scratch-lifetime", default="1h", show_default=True,
              help="How long the scratch copy is kept for the transfer before it may be deleted.")
@click.option("--name-prefix", default="", help="Prefix for the DID names (the file names by default).")
@click.option("--dry-run", is_flag=True, help="Check and show what would be registered; register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def upload(ctx, paths, destination, scope, dataset, lifetime, scratch_lifetime, name_prefix, dry_run, as_json):
    """Register PATHS (files, directories) from the scratch area and replicate them to --rse."""
    console = Console(stderr=True)
    uploader = _uploader(ctx)
    try:
        with console.status("checking files and computing checksums"):
            plan = uploader.plan(paths, destination_rse=destination, scope=scope, dataset=dataset,
                                 lifetime=parse_duration(lifetime),
                                 scratch_lifetime=parse_duration(scratch_lifetime) or 3600,
                                 name_prefix=name_prefix)
        if not dry_run and plan.new_files:
            plan = uploader.execute(plan)
        elif not dry_run:
            plan.rules = [r["id"] for r in uploader.client.list_did_rules(plan.scope, plan.dataset)]
    except UploadError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, **plan.as_dict()}, indent=2))
        return
    table = Table(title=f"{plan.scope}:{plan.dataset} -> {plan.destination_rse}" + (" (dry run)" if dry_run else ""))
    for column in ("file", "DID", "bytes", "adler32", "state"):
        table.add_column(column)
    for f in plan.files:
        table.add_row(f.path, f"{f.scope}:{f.name}", str(f.bytes), f.adler32,
                      "would register" if dry_run and f.state == "new" else f.state)
    Console().print(table)
    if not dry_run:
        click.echo(f"follow the copy with: datalakectl status {plan.scope}:{plan.dataset} --wait")


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
    uploader = _uploader(ctx)
    from rucio.common.exception import DataIdentifierNotFound

    try:
        rules = uploader.status(scope, name)
    except DataIdentifierNotFound:
        raise click.ClickException(f"{did} does not exist") from None
    if wait:
        deadline = time.monotonic() + (parse_duration(timeout) or 3600)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), disable=as_json) as progress:
            tasks = {r["id"]: progress.add_task(r["rse_expression"], total=None) for r in rules}
            while True:
                for r in rules:
                    total = r["ok"] + r["replicating"] + r["stuck"]
                    progress.update(tasks[r["id"]], completed=r["ok"], total=total or None,
                                    description=f"{r['rse_expression']} {r['state']}")
                if all(r["state"] in ("OK", "STUCK") for r in rules) or time.monotonic() > deadline:
                    break
                time.sleep(2)
                rules = uploader.status(scope, name)
    if as_json:
        click.echo(json.dumps(rules, indent=2))
    else:
        table = Table(title=did)
        for column in ("rule", "RSE", "state", "ok", "replicating", "stuck", "expires"):
            table.add_column(column)
        for r in rules:
            table.add_row(r["id"], r["rse_expression"], r["state"], str(r["ok"]), str(r["replicating"]),
                          str(r["stuck"]), r["expires_at"] or "-")
        Console().print(table)
    if wait and not all(r["state"] == "OK" for r in rules if r["rse_expression"] != ctx.obj["scratch_rse"]):
        sys.exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
