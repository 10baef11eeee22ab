# JupyterHub configuration of the local data lake: the same hub_plugins as production, a local process spawner.
# Written for `devstack.hub.LocalHub`, which passes its settings as a JSON file (mode 0600) in DLAAS_HUB_SETTINGS.
import json
import os
from pathlib import Path

from hub_plugins import hub_roles
from hub_plugins.spawner_env import apply
from hub_plugins.sqlite_tuning import use_wal

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
s = json.loads(Path(os.environ["DLAAS_HUB_SETTINGS"]).read_text())

c.JupyterHub.bind_url = s["bind_url"]
c.JupyterHub.hub_bind_url = s["hub_bind_url"]
c.ConfigurableHTTPProxy.api_url = s["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [s["proxy_command"]]
c.JupyterHub.db_url = s["db_url"]
if s.get("sqlite_wal", True):
    use_wal()  # the login path's first bottleneck was SQLite's fsync per commit (docs/benchmarks.md)
if s.get("http_client") == "simple":
    # Benchmarks' baseline only: hide pycurl, so JupyterHub leaves tornado on its pure-Python HTTP client.
    import sys

    sys.modules["pycurl"] = None
c.JupyterHub.cookie_secret_file = s["cookie_secret_file"]
c.JupyterHub.cleanup_servers = True

c.JupyterHub.authenticator_class = "escape-iam"
c.EscapeIAMAuthenticator.issuer = s["issuer"]
c.EscapeIAMAuthenticator.client_id = s["client_id"]
c.EscapeIAMAuthenticator.client_secret = s["client_secret"]
c.EscapeIAMAuthenticator.oauth_callback_url = s["public_url"] + "/hub/oauth_callback"
if s.get("token_url"):  # tests: the token endpoint through a fault-injecting proxy (else from discovery)
    c.EscapeIAMAuthenticator.token_url = s["token_url"]
c.EscapeIAMAuthenticator.token_profile = s.get("token_profile", "iam")  # the dev IAM's: groups or wlcg.groups
c.EscapeIAMAuthenticator.allowed_groups = {"escape/users"}
# IAM admins operate the hub (role dlaas-operator), without becoming JupyterHub admins (hub_plugins/hub_roles.py).
c.EscapeIAMAuthenticator.operator_groups = {"escape/admins"}
c.EscapeIAMAuthenticator.exchange_targets = {
    "rucio": {"audience": "rucio", "scope": "openid profile"},
    "eos": {"audience": "eos", "scope": "openid profile"},
}
c.EscapeIAMAuthenticator.refresh_margin = s.get("refresh_margin", 300)
c.Authenticator.auth_refresh_age = s.get("auth_refresh_age", 60)
c.EscapeIAMAuthenticator.refresh_backoff = s.get("refresh_backoff", 30)

c.JupyterHub.load_roles = s.get("roles", [])
c.JupyterHub.services = s.get("services", [])  # e.g. the tests' client that starts and stops servers

c.JupyterHub.spawner_class = "devstack.local_spawner.ProfilesLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = s["home_dir_template"]
c.ProfilesLocalProcessSpawner.profiles = s.get("profiles", [])
c.Spawner.cmd = [s["singleuser_command"]]
c.Spawner.args = s.get("singleuser_args", [])
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.pre_spawn_hook = apply
c.DataLakeEnvironment.token_dir = s["token_dir_template"]
c.DataLakeEnvironment.rucio_base_url = s.get("rucio_url", "")
c.DataLakeEnvironment.rucio_site_name = s.get("site_name", "")
c.DataLakeEnvironment.rucio_destination_rse = s.get("destination_rse", "")
c.DataLakeEnvironment.rucio_rse_mount_path = s.get("rse_mount_path", "")
c.DataLakeEnvironment.rucio_path_begins_at = s.get("path_begins_at", 0)
c.DataLakeEnvironment.jupyter_config_path = s["jupyter_config_path"]
c.DataLakeEnvironment.icon_font = s["icon_font"]
c.DataLakeEnvironment.rucio_config_path = s["rucio_config_path"]
c.DataLakeEnvironment.rucio_cache_dir = s["rucio_cache_dir"]
c.DataLakeEnvironment.scratch_mount = s["scratch_mount"]
c.DataLakeEnvironment.registrar_url = s.get("registrar_url", "")
c.ProfilesLocalProcessSpawner.scratch_dir_template = s["scratch_mount"]
c.DataLakeEnvironment.scratch_rse = s["scratch_rse"]

# Last: the roles, custom scope and server token scopes, from the operator settings above (as in production).
hub_roles.apply(c)
