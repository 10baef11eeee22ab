"""Who may put replicas on the DLaaS scratch area: decided by the Rucio server, where no user can skip the check.

The scratch area is a non-deterministic RSE holding every researcher's results until they are uploaded. On such an
RSE Rucio takes a new replica's PFN as given, and the greedy reaper later deletes whatever path that PFN names.
Under Rucio's generic policy any account may register replicas there: with add_replicas on an RSE whose name ends in
SCRATCHDISK, and on ANY RSE through add_did / add_dids / attach_dids with an `rse` (the "Tier-0 workaround", which
never asks the add_replicas permission). One user could thus have another user's files, or files outside the area,
deleted. So, for RSEs with the attribute `dlaas_scratch=True`:

- nobody but root registers replicas there with add_replicas, add_dids or attach_dids_to_dids, and nobody but root
  creates a rule whose RSE expression reaches a scratch RSE, except through the registration below;
- an account with the attribute `dlaas_registrar=True` (the DLaaS registration service) may register replicas there
  with add_did (a new dataset with its files and rules, one transaction) or attach_dids (files added to an existing
  dataset), for one owner at a time: the account that owns every scope involved. The rules belong to that owner (the
  DIDs record the registering account: Rucio's REST API sets no other owner), and every PFN names a clean path
  (no `.`, `..`, empty components, backslashes, `%`, `?` or `#`) under `<scratch protocol prefix><owner>/`, on the
  protocol's own host and port - the owner's own scratch directory.

- only root marks accounts as registrars, changes their identities, or changes a scratch RSE's attributes and
  protocols (they decide what the reaper deletes) - not even accounts with Rucio's `admin` attribute.

Every other decision is the base policy's: Rucio's generic one, or the permission module named by
`[policy] dlaas_base_permission` (for a VO that already has a policy package).
"""

from __future__ import annotations

import importlib
import json
from functools import cache
from urllib.parse import urlparse

from rucio.common import config
from rucio.common.types import InternalScope

SCRATCH_ATTRIBUTE = "dlaas_scratch"
REGISTRAR_ATTRIBUTE = "dlaas_registrar"
UPLOAD_HINT = "files of the scratch area are registered by the DLaaS registration service: use `datalakectl upload`"


@cache
def _base():
    name = config.config_get(
        "policy",
        "dlaas_base_permission",
        raise_exception=False,
        default="rucio.core.permission.generic",
        check_config_table=False,
    )
    return importlib.import_module(name)


def has_permission(issuer, action, kwargs, session=None):
    check = _CHECKS.get(action)
    if check is not None:
        if session is None:
            from rucio.db.sqla.constants import DatabaseOperationType
            from rucio.db.sqla.session import db_session

            with db_session(DatabaseOperationType.READ) as session:
                decision = check(issuer, kwargs, session)
        else:
            decision = check(issuer, kwargs, session)
        if decision is not None:
            return decision
    return _base().has_permission(issuer, action, kwargs, session=session)


# --- facts from the database --------------------------------------------------------------------------------------


def _external(value) -> str | None:
    return getattr(value, "external", value)


def _truthy(value) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def _is_root(issuer) -> bool:
    return _external(issuer) == "root"


def _is_scratch(rse_id, session) -> bool:
    if not rse_id:
        return False
    from rucio.core.rse import get_rse_attribute

    # No cache: a cached "no such attribute" would outlive the operator setting it.
    return _truthy(get_rse_attribute(rse_id, SCRATCH_ATTRIBUTE, use_cache=False, session=session))


def _is_registrar(issuer, session) -> bool:
    from rucio.core.account import list_account_attributes

    return any(
        a["key"] == REGISTRAR_ATTRIBUTE and _truthy(a["value"])
        for a in list_account_attributes(issuer, session=session)
    )


def _scope_owner(scope, vo: str, session) -> str | None:
    from rucio.db.sqla import models
    from sqlalchemy import select

    internal = scope if isinstance(scope, InternalScope) else InternalScope(str(scope), vo=vo)
    owner = session.execute(select(models.Scope.account).where(models.Scope.scope == internal)).scalar()
    return _external(owner)


def _rse_id_by_name(name, vo: str, session) -> str | None:
    from rucio.common.exception import RSENotFound
    from rucio.core.rse import get_rse_id

    try:
        return get_rse_id(rse=name, vo=vo, session=session)
    except RSENotFound:
        return None


def _reaches_scratch(expression, vo: str, session) -> bool:
    if not expression:
        return False
    from rucio.common.exception import InvalidRSEExpression, RSEWriteBlocked
    from rucio.core.rse_expression_parser import parse_expression

    try:
        rses = parse_expression(expression, filter_={"vo": vo}, session=session)
    except (InvalidRSEExpression, RSEWriteBlocked):
        return False  # the rule itself will fail with Rucio's own message
    return any(_is_scratch(rse["id"], session) for rse in rses)


def _rules_reach_scratch(rules, vo, session) -> bool:
    return any(_reaches_scratch(rule.get("rse_expression"), vo, session) for rule in rules or [])


def _request_body() -> dict:
    """The JSON body of the add_did request being served: Rucio does not pass its `rse` and `dids` to the add_did
    permission, yet they are what the request will register (the same body is parsed again to execute it)."""
    try:
        from flask import has_request_context, request
    except ImportError:
        return {}
    if not has_request_context():
        return {}
    try:
        body = json.loads(request.get_data(cache=True, as_text=True) or "{}")  # as Rucio's json_parameters reads it
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- a registrar's registration ------------------------------------------------------------------------------------


def _pfn_error(pfn, rse_id, owner: str, session) -> str | None:
    """None when `pfn` names a clean path inside `owner`'s directory of the scratch RSE, else why not."""
    from rucio.core.rse import get_rse_protocols

    if not isinstance(pfn, str) or not pfn:
        return "every file needs the PFN of its place in the scratch area"
    if any(c in pfn for c in "\\%?#") or any(ord(c) < 32 or ord(c) == 127 for c in pfn):
        return f"PFN {pfn!r} holds a character not allowed on the scratch area"
    parsed = urlparse(pfn)
    host, _, port = parsed.netloc.partition(":")
    path = parsed.path
    while "//" in path:
        path = path.replace("//", "/")
    for proto in get_rse_protocols(rse_id, session=session)["protocols"]:
        prefix = "/" + str(proto.get("prefix") or "").strip("/")
        proto_port = int(proto.get("port") or 0)
        if parsed.scheme != proto["scheme"] or (port and int(port) != proto_port) or (not port and proto_port):
            continue
        if host != proto["hostname"]:
            continue
        own = f"{prefix.rstrip('/')}/{owner}/"
        if not path.startswith(own):
            continue
        parts = path[len(own) :].split("/")
        if any(part in ("", ".", "..") for part in parts):
            return f"PFN {pfn!r} is not a clean path inside {owner}'s scratch directory"
        return None
    return f"PFN {pfn!r} is not inside {owner}'s directory of the scratch area"


def _files_error(files, rse_id, owner: str, vo: str, session) -> str | None:
    for f in files or []:
        if _scope_owner(f.get("scope"), vo, session) != owner:
            return f"file {_external(f.get('scope'))}:{f.get('name')} is not in a scope of {owner}"
        if "account" in f and _external(f["account"]) != owner:
            return f"file {f.get('name')} must belong to {owner}"
        if f.get("bytes") is None or not f.get("adler32"):
            return f"file {f.get('name')} needs its size and adler32"
        error = _pfn_error(f.get("pfn"), rse_id, owner, session)
        if error:
            return error
    return None


def _new_dataset_error(scope, body: dict, rules, rse_id, vo: str, session) -> str | None:
    owner = _scope_owner(scope, vo, session)
    if owner is None:
        return f"scope {_external(scope)} does not exist"
    if str(body.get("type", "")).upper() != "DATASET":
        return "the registrar registers datasets only"
    if not rules or any(_external(rule.get("account")) != owner for rule in rules):
        return f"the dataset's rules must belong to {owner}, the owner of its scope"
    return _files_error(body.get("dids"), rse_id, owner, vo, session)


def _deny(message: str):
    # Imported here: rucio.core.permission imports this module while it is itself being imported.
    from rucio.core.permission import PermissionResult

    return PermissionResult(False, message)


# --- the checks, by action ------------------------------------------------------------------------------------------


def _add_replicas(issuer, kwargs, session):
    if _is_scratch(kwargs.get("rse_id"), session) and not _is_root(issuer):
        return _deny(UPLOAD_HINT)
    return None


def _add_did(issuer, kwargs, session):
    if _is_root(issuer):
        return None
    body = _request_body()
    rse_id = _rse_id_by_name(body["rse"], issuer.vo, session) if isinstance(body.get("rse"), str) else None
    if _is_scratch(rse_id, session):
        if not _is_registrar(issuer, session):
            return _deny(UPLOAD_HINT)
        error = _new_dataset_error(kwargs.get("scope"), body, kwargs.get("rules"), rse_id, issuer.vo, session)
        return _deny(f"registration refused: {error}") if error else True
    if _rules_reach_scratch(kwargs.get("rules"), issuer.vo, session):
        return _deny(f"rules on the scratch area are made by the registration service; {UPLOAD_HINT}")
    return None


def _add_dids(issuer, kwargs, session):
    # Bulk: never for the scratch area (the registrar registers one dataset at a time with add_did).
    for did in kwargs.get("dids") or []:
        if _is_root(issuer):
            return None
        if _is_scratch(did.get("rse_id"), session) or _rules_reach_scratch(did.get("rules"), issuer.vo, session):
            return _deny(UPLOAD_HINT)
    return None


def _attach_error(issuer, scope, attachment, session) -> str | None | bool:
    """For one attachment: None when it does not touch the scratch area, an error, or True when a registrar may."""
    if not _is_scratch(attachment.get("rse_id"), session):
        return None
    if _is_root(issuer):
        return None
    if not _is_registrar(issuer, session):
        return UPLOAD_HINT
    owner = _scope_owner(scope, issuer.vo, session)
    if owner is None:
        return f"scope {_external(scope)} does not exist"
    error = _files_error(attachment.get("dids"), attachment["rse_id"], owner, issuer.vo, session)
    return f"registration refused: {error}" if error else True


def _attach_dids(issuer, kwargs, session):
    result = _attach_error(issuer, kwargs.get("scope"), kwargs.get("attachment") or {}, session)
    return _deny(result) if isinstance(result, str) else result


def _attach_dids_to_dids(issuer, kwargs, session):
    # Several datasets at once: a registrar uses attach_dids; only root registers scratch replicas this way.
    attachments = kwargs.get("attachments") or []
    if any(_is_scratch(a.get("rse_id"), session) for a in attachments) and not _is_root(issuer):
        return _deny(UPLOAD_HINT)
    return None


def _add_rule(issuer, kwargs, session):
    if not _is_root(issuer) and _reaches_scratch(kwargs.get("rse_expression"), issuer.vo, session):
        return _deny(f"rules on the scratch area are made by the registration service; {UPLOAD_HINT}")
    return None


def _registrar_attribute(issuer, kwargs, session):
    # Who is the registration service is the operators' decision: not even a Rucio admin may make an account one.
    if kwargs.get("key") == REGISTRAR_ATTRIBUTE and not _is_root(issuer):
        return _deny(f"only root sets or removes {REGISTRAR_ATTRIBUTE}")
    return None


def _registrar_identity(issuer, kwargs, session):
    # An identity added to the service's account would log its owner in as the service.
    from rucio.common.types import InternalAccount

    account = kwargs.get("account")
    if account is None or _is_root(issuer):
        return None
    if not isinstance(account, InternalAccount):
        account = InternalAccount(str(account), vo=issuer.vo)
    if _is_registrar(account, session):
        return _deny(f"only root changes the identities of {_external(account)}, a registration service account")
    return None


def _scratch_rse_settings(issuer, kwargs, session):
    # The scratch RSE's attributes and protocols decide what the reaper deletes and where: root only. So does
    # marking an RSE as scratch.
    if _is_root(issuer):
        return None
    if _is_scratch(kwargs.get("rse_id"), session) or kwargs.get("key") == SCRATCH_ATTRIBUTE:
        return _deny(f"only root changes the settings of the scratch area {kwargs.get('rse')}")
    return None


_CHECKS = {
    "add_attribute": _registrar_attribute,
    "del_attribute": _registrar_attribute,
    "add_account_identity": _registrar_identity,
    "del_account_identity": _registrar_identity,
    "add_rse_attribute": _scratch_rse_settings,
    "del_rse_attribute": _scratch_rse_settings,
    "add_protocol": _scratch_rse_settings,
    "del_protocol": _scratch_rse_settings,
    "update_protocol": _scratch_rse_settings,
    "update_rse": _scratch_rse_settings,
    "add_replicas": _add_replicas,
    "add_did": _add_did,
    "add_dids": _add_dids,
    "attach_dids": _attach_dids,
    "attach_dids_to_dids": _attach_dids_to_dids,
    "add_rule": _add_rule,
}
