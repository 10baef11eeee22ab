"""A user's IAM groups, as INDIGO IAM's two token profiles present them.

Under IAM's own profile (`iam`) userinfo carries `groups`: plain names such as `escape/users`. Under the WLCG profile
(`wlcg`) userinfo has no `groups` at all; membership comes as `wlcg.groups`, names with a leading `/`
(`/escape/users`), and only when the `wlcg.groups` scope was requested and granted. oauthenticator cannot name that
claim with a dotted key (it splits keys on `.`), so the authenticator gets a function instead. Names come out
without the leading `/`, so allowed and operator groups are written the same way under both profiles.
"""

from __future__ import annotations

from collections.abc import Callable

PROFILES = {"iam": "groups", "wlcg": "wlcg.groups"}
#: Extra scopes a login must request under each profile for the groups to be released.
PROFILE_SCOPES = {"iam": [], "wlcg": ["wlcg.groups"]}


def normalise(names) -> list[str]:
    """Group names without a leading `/`, in IAM's order, each once; anything that is not a name is dropped."""
    if not isinstance(names, list):
        return []
    seen: list[str] = []
    for name in names:
        if isinstance(name, str) and name.strip("/") and name.strip("/") not in seen:
            seen.append(name.strip("/"))
    return seen


def groups_reader(user_key: str, profile: str) -> Callable[[dict], list[str]]:
    """auth_state -> the user's groups, read from userinfo (auth_state[user_key]) as `profile` shapes it."""
    claim = PROFILES[profile]

    def groups(auth_state: dict) -> list[str]:
        return normalise(((auth_state or {}).get(user_key) or {}).get(claim))

    return groups
