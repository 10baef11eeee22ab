"""The hub configuration every DLaaS deployment shares, set by one function: the local stack's
devstack/jupyterhub_config.py and the z2jh values' last hub.extraConfig snippet both call it, so the laptop runs
exactly the production glue.

    from hub_plugins.hub_config import configure
    configure(c)   # last: after the deployment's own settings (z2jh: after hub.config)

It sets what must not differ between deployments: the `escape-iam` authenticator, user names that are safe
directory names (the scratch subPath, the registrar's per-user directory), the user server's Data Lake environment
(hub_plugins.spawner_env as pre_spawn_hook), JupyterLab as the landing page, how long the hub waits for a started
server to answer, SQLite tuning where the database is SQLite, and the roles and scopes (hub_plugins.hub_roles, which
reads the operator settings, hence last). Values the deployment set for these keys are replaced.

Beside it, each deployment sets only what truly differs: the spawner class and its process or pod settings
(profiles, volumes, start timeout), addresses, secrets, the IAM client, its groups and audiences, refresh timing.
"""

from __future__ import annotations

from hub_plugins import hub_roles, spawner_env, sqlite_tuning

AUTHENTICATOR = "escape-iam"
#: One safe path component, matched whole (\Z: a trailing newline does not pass): hub user names become directory
#: names (the scratch subPath, the registrar's <scratch root>/<username>, the local token and scratch directories).
USERNAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}\Z"
DEFAULT_URL = "/lab"
#: A starting server writes rucio.cfg, prepares the Rucio extension's cache and starts its token agent before it
#: answers; on a busy node that exceeds JupyterHub's 30 s default.
HTTP_TIMEOUT = 60
SQLITE_DEFAULT_URL = "sqlite:///jupyterhub.sqlite"  # JupyterHub's default db_url


def apply_profile(spawner, user_options):
    """Spawner.apply_user_options for KubeSpawner: the chosen profile is applied by KubeSpawner's own
    load_user_options (which only accepts profiles of profileList). Without a hook JupyterHub 6 logs "Received
    unhandled user_options" on every profiled spawn; KubeSpawner applies the profile again in start(), which is
    harmless for profiles whose overrides are fixed values, as ours are."""
    return spawner.load_user_options()


def configure(c, *, sqlite_wal: bool = True, token_max_age: int = hub_roles.DEFAULT_TOKEN_MAX_AGE) -> None:
    """Apply DLaaS's shared hub configuration to `c` (a traitlets Config), last.

    `sqlite_wal=False` keeps SQLite's rollback journal: needed when the hub's database sits on NFS (WAL needs shared
    memory between the processes using the file). `token_max_age` caps the lifetime of tokens users create unless
    the configuration already sets JupyterHub.token_expires_in_max_seconds.
    """
    c.JupyterHub.authenticator_class = AUTHENTICATOR
    c.Authenticator.username_pattern = USERNAME_PATTERN
    c.Spawner.pre_spawn_hook = spawner_env.apply
    c.Spawner.default_url = DEFAULT_URL
    c.Spawner.http_timeout = HTTP_TIMEOUT
    c.KubeSpawner.apply_user_options = apply_profile  # read only by KubeSpawner (production)
    if c.JupyterHub.get("db_url", SQLITE_DEFAULT_URL).startswith("sqlite:"):
        sqlite_tuning.wait_for_locks()  # a login behind another writer's lock waits for it instead of failing
        if sqlite_wal:
            sqlite_tuning.use_wal()  # the login path's first bottleneck was SQLite's fsync per commit (benchmarks.md)
    hub_roles.apply(c, token_max_age=token_max_age)
