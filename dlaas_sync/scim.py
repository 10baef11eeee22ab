"""Read who is in which group from INDIGO IAM's SCIM API, with a token of the sync's own IAM client.

The token comes from the client_credentials grant with scope `scim:read` (an IAM administrator registers the client
for it); it lives in memory only and is never logged. IAM pages every list (`startIndex`, `count` up to 100,
`totalResults`) and leaves members out of group resources: a group's members come from /scim/Groups/{id}/members,
the users' details from /scim/Users.

A partial answer would look like people leaving, so every list is read to its end and an answer that does not add
up is refused as a whole (ScimError): a page missing, `totalResults` changing between pages, an id twice, a member
who is no user, a configured group IAM does not have.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import requests

SCIM_READ = "scim:read"
PAGE_SIZE = 100
MAX_PAGES = 10_000


class ScimError(Exception):
    """IAM could not be read, or its answer is not usable; the message is one line."""


@dataclass(frozen=True)
class IamUser:
    sub: str  # IAM's user id: the `sub` of the user's tokens
    username: str
    email: str | None
    active: bool
    groups: frozenset[str]  # names (display) of the user's direct groups, e.g. escape/users


def user_from_resource(resource) -> IamUser:
    """A SCIM user resource -> IamUser; ScimError when it lacks what the sync relies on."""
    if not isinstance(resource, dict) or not isinstance(resource.get("id"), str) or not resource["id"]:
        raise ScimError("IAM answered a user without an id")
    username = resource.get("userName")
    if not isinstance(username, str) or not username:
        raise ScimError(f"IAM answered user {resource['id']} without a userName")
    emails = [e for e in resource.get("emails") or [] if isinstance(e, dict) and isinstance(e.get("value"), str)]
    primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    groups = frozenset(
        g["display"] for g in resource.get("groups") or [] if isinstance(g, dict) and isinstance(g.get("display"), str)
    )
    return IamUser(
        sub=resource["id"],
        username=username,
        email=primary["value"] if primary else None,
        active=resource.get("active", True) is not False,
        groups=groups,
    )


class ScimClient:
    """The IAM at `iam_url` (its issuer), read as client `client_id`."""

    def __init__(
        self,
        iam_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 30.0,
        page_size: int = PAGE_SIZE,
        session: requests.Session | None = None,
    ):
        self.iam_url = iam_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.timeout = timeout
        self.page_size = page_size
        self.http = session or requests.Session()
        self._discovery: dict | None = None
        self._token: tuple[str, float] | None = None

    # --- the IAM and the token ------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return self.http.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise ScimError(f"IAM at {self.iam_url} is unreachable ({type(e).__name__})") from None

    @staticmethod
    def _json(r: requests.Response, what: str):
        try:
            return r.json()
        except ValueError:
            raise ScimError(f"IAM answered {what} with something that is not JSON (HTTP {r.status_code})") from None

    @property
    def discovery(self) -> dict:
        if self._discovery is None:
            r = self._request("GET", f"{self.iam_url}/.well-known/openid-configuration")
            doc = self._json(r, "its discovery document")
            if (
                r.status_code != 200
                or not isinstance(doc, dict)
                or not doc.get("issuer")
                or not doc.get("token_endpoint")
            ):
                raise ScimError(
                    f"{self.iam_url} has no usable OpenID discovery document (HTTP {r.status_code}): "
                    "is it the IAM's issuer URL?"
                )
            self._discovery = doc
        return self._discovery

    @property
    def issuer(self) -> str:
        """The issuer exactly as IAM's tokens name it (`iss`): what Rucio identities carry after `ISS=`."""
        return self.discovery["issuer"]

    def token(self) -> str:
        if self._token and self._token[1] > time.monotonic():
            return self._token[0]
        r = self._request(
            "POST",
            self.discovery["token_endpoint"],
            auth=(self.client_id, self._secret),
            data={"grant_type": "client_credentials", "scope": SCIM_READ},
        )
        body = self._json(r, "the token request")
        if r.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error", "no token") if isinstance(body, dict) else "no token"
            detail = body.get("error_description", "") if isinstance(body, dict) else ""
            raise ScimError(
                f"IAM refused a {SCIM_READ} token to client {self.client_id}: {error}"
                + (f" ({detail})" if detail else "")
                + "; check the client id, secret and its scopes"
            )
        if SCIM_READ not in str(body.get("scope", SCIM_READ)).split():
            raise ScimError(
                f"IAM gave client {self.client_id} a token without {SCIM_READ}: ask the IAM "
                "administrators to allow that scope for the client"
            )
        lifetime = body.get("expires_in")
        lifetime = lifetime if isinstance(lifetime, int) and lifetime > 0 else 300
        self._token = (body["access_token"], time.monotonic() + max(lifetime - 30, lifetime / 2))
        return self._token[0]

    # --- SCIM ------------------------------------------------------------------------------------------------------

    def get(self, path: str, params: dict | None = None):
        """GET <iam>/scim/<path> -> the JSON answer, or None for 404; ScimError for anything else but 200."""
        r = self._request(
            "GET",
            f"{self.iam_url}/scim/{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token()}", "Accept": "application/scim+json"},
        )
        if r.status_code == 404:
            return None
        body = self._json(r, f"/scim/{path}")
        if r.status_code != 200:
            reason = ""
            if isinstance(body, dict):
                reason = body.get("detail") or body.get("error_description") or body.get("error") or ""
            raise ScimError(f"IAM answered /scim/{path} with HTTP {r.status_code}" + (f": {reason}" if reason else ""))
        return body

    def pages(self, path: str, params: dict | None = None) -> list:
        """Every resource of a SCIM list, page by page; ScimError unless the pages add up to totalResults."""
        items: list = []
        start, total = 1, None
        for _ in range(MAX_PAGES):
            page = self.get(path, {**(params or {}), "startIndex": start, "count": self.page_size})
            if (
                not isinstance(page, dict)
                or not isinstance(page.get("Resources", []), list)
                or not isinstance(page.get("totalResults"), int)
                or page["totalResults"] < 0
            ):
                raise ScimError(f"IAM's answer to /scim/{path} is not a SCIM list")
            if total is None:
                total = page["totalResults"]
            elif page["totalResults"] != total:
                raise ScimError(
                    f"/scim/{path} changed while it was read ({total} then {page['totalResults']} results): try again"
                )
            resources = page.get("Resources", [])
            items += resources
            start += len(resources)
            if not resources or start > total:
                break
        else:
            raise ScimError(f"/scim/{path} did not end after {MAX_PAGES} pages")
        if len(items) != total:
            raise ScimError(f"IAM's answer to /scim/{path} is incomplete: {len(items)} of {total} results")
        return items

    def users(self) -> list[IamUser]:
        users = [user_from_resource(r) for r in self.pages("Users")]
        _unique((u.sub for u in users), "/scim/Users")
        return users

    def user(self, sub: str) -> IamUser | None:
        resource = self.get(f"Users/{requests.utils.quote(sub, safe='')}")
        return None if resource is None else user_from_resource(resource)

    def users_named(self, username: str) -> list[IamUser]:
        """Users whose userName is `username` (IAM compares without case: callers pick the exact one)."""
        quoted = username.replace("\\", "\\\\").replace('"', '\\"')
        return [user_from_resource(r) for r in self.pages("Users", {"filter": f'userName eq "{quoted}"'})]

    def groups(self) -> dict[str, str]:
        """Group name (IAM's displayName, the full path: escape/users) -> group id."""
        found: dict[str, str] = {}
        for g in self.pages("Groups"):
            if not isinstance(g, dict) or not isinstance(g.get("id"), str) or not isinstance(g.get("displayName"), str):
                raise ScimError("IAM answered a group without id or displayName")
            if g["displayName"] in found:
                raise ScimError(f"IAM lists group {g['displayName']} twice")
            found[g["displayName"]] = g["id"]
        return found

    def group_member_ids(self, group_id: str) -> list[str]:
        refs = self.pages(f"Groups/{requests.utils.quote(group_id, safe='')}/members")
        ids = [m.get("value") for m in refs if isinstance(m, dict)]
        if len(ids) != len(refs) or not all(isinstance(i, str) and i for i in ids):
            raise ScimError(f"IAM answered a member of group {group_id} without an id")
        _unique(ids, f"the members of group {group_id}")
        return ids

    def members(self, group_names: Iterable[str]) -> list[IamUser]:
        """The users who are direct members of any of `group_names`, read in full (ScimError if IAM cannot say)."""
        ids_by_name = self.groups()
        wanted = list(dict.fromkeys(group_names))
        missing = [g for g in wanted if g not in ids_by_name]
        if missing:
            raise ScimError(f"IAM has no group {', '.join(missing)}: check the configured groups")
        member_ids: dict[str, str] = {}
        for name in wanted:
            for sub in self.group_member_ids(ids_by_name[name]):
                member_ids.setdefault(sub, name)
        if not member_ids:
            return []
        users = {u.sub: u for u in self.users()}
        for sub, group in member_ids.items():
            if sub not in users:
                raise ScimError(
                    f"IAM lists {sub} as a member of {group} but not among its users: its answer is "
                    "inconsistent, try again"
                )
        return [users[sub] for sub in sorted(member_ids)]


def _unique(ids: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ScimError(f"IAM lists {i} twice in {where}")
        seen.add(i)
