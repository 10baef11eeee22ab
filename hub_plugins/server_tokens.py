"""Which hub token is a user's running server's own: the only kind of token the token API answers.

JupyterHub keeps a server's token (`spawner.api_token`) in memory only, so a hub restart forgets which token it
gave which server. When a server is spawned, the id of its token's database row (never the token) is recorded in
the user's encrypted auth_state under `server_token_ids` ({server name: id}); it is dropped when the server stops,
and JupyterHub deletes the token itself then. A personal token (made on /hub/token or through the REST API, with
whatever scopes) is never recorded, so it never matches.

JupyterHub also keeps a salted hash of each server's token as the secret of that server's OAuth client (the server
authenticates with it). `issued_to` compares against it: the token API falls back to that comparison when the
record misses a server's token (e.g. a concurrent login saved auth_state while the server was being spawned) and
then records the token again.
"""

from __future__ import annotations

from jupyterhub.utils import compare_token

KEY = "server_token_ids"


def recorded_server(auth_state: dict | None, token_id: int) -> str | None:
    """The name of the server `token_id` was recorded for, or None."""
    for name, recorded in ((auth_state or {}).get(KEY) or {}).items():
        if recorded == token_id:
            return name
    return None


def with_server_token(auth_state: dict | None, server_name: str, token_id: int | None) -> dict:
    """A copy of `auth_state` recording `token_id` for `server_name` (forgetting the server when None)."""
    state = dict(auth_state or {})
    ids = dict(state.get(KEY) or {})
    if token_id is None:
        ids.pop(server_name, None)
    else:
        ids[server_name] = token_id
    state[KEY] = ids
    return state


def running_spawner(user, server_name: str):
    """The spawner of `user`'s server `server_name` if it runs (or is starting), not stopping; else None."""
    spawner = user.spawners.get(server_name)  # dict.get: never creates a spawner
    if spawner is None or spawner.server is None or spawner.pending == "stop":
        return None
    return spawner


def issued_to(spawner, token: str) -> bool:
    """Whether `token` is the one JupyterHub gave `spawner`'s server (its OAuth client secret's hash)."""
    client = spawner.orm_spawner.oauth_client if spawner.orm_spawner is not None else None
    return bool(client is not None and client.secret and token and compare_token(client.secret, token))
