"""The environment of a user's server, for any spawner: where to fetch tokens, where to write them, how to reach
Rucio. Never a token: the server fetches its tokens itself from the hub's token API (singleuser.token_agent).

Use it as the spawner's pre_spawn_hook:

    c.Spawner.pre_spawn_hook = "hub_plugins.spawner_env.apply"   # or the function itself
    c.DataLakeEnvironment.rucio_base_url = "https://rucio.example"
"""

from __future__ import annotations

from traitlets import Integer, Unicode
from traitlets.config import Configurable

from hub_plugins.hub_roles import SERVER_TOKEN_SCOPES  # noqa: F401 - where configurations used to import it


class DataLakeEnvironment(Configurable):
    token_dir = Unicode(
        "/dev/shm/dlaas-{username}",
        config=True,
        help="""Memory-backed directory for the token files inside the user's server ({username} is replaced).
        On Kubernetes, the mount point of a medium=Memory emptyDir.""",
    )
    rucio_token_file = Unicode("rucio_token", config=True, help="Rucio token file name inside token_dir.")
    eos_token_file = Unicode("eos_token", config=True, help="EOS token file name inside token_dir (OAUTH2_TOKEN).")

    rucio_base_url = Unicode("", config=True, help="Rucio server URL the user's server talks to.")
    rucio_auth_url = Unicode("", config=True, help="Rucio auth server URL (defaults to rucio_base_url).")
    rucio_instance_name = Unicode("escape", config=True, help="Name of the Rucio instance in the extension.")
    rucio_display_name = Unicode("ESCAPE Data Lake", config=True, help="Name shown in the Rucio sidebar.")
    rucio_site_name = Unicode(
        "", config=True, help="Site of the user's servers: Rucio returns cache (XCache) PFNs for this site."
    )
    rucio_destination_rse = Unicode(
        "", config=True, help="RSE mounted into the user's server (replica mode of the Rucio extension)."
    )
    rucio_rse_mount_path = Unicode("", config=True, help="Where that RSE is mounted inside the user's server.")
    rucio_path_begins_at = Integer(
        0, config=True, help="How many leading path components of a PFN to drop before joining the mount path."
    )
    rucio_ca_cert = Unicode("", config=True, help="CA bundle for the Rucio server, if not the system one.")
    rucio_config_path = Unicode(
        "/tmp/dlaas-{username}/rucio.cfg",
        config=True,
        help="Where the user's server writes rucio.cfg for the rucio CLI and Python (RUCIO_CONFIG); no secret in it.",
    )
    rucio_cache_dir = Unicode(
        "/tmp/rucio-jupyterlab-{username}",
        config=True,
        help="Per-user cache of the Rucio extension (its default is shared by every user of a machine).",
    )
    scratch_mount = Unicode(
        "/scratch",
        config=True,
        help="""Where the user's own scratch directory is mounted in the server ({username} is replaced). Only that
        user's directory: the registration service resolves upload paths inside it.""",
    )
    scratch_rse = Unicode("DLAAS-SCRATCH", config=True, help="The greedy RSE backing the scratch area.")
    registrar_url = Unicode(
        "",
        config=True,
        help="""URL of the registration service (dlaas-registrar) that registers scratch uploads in Rucio, e.g.
        the hub's proxy + /services/dlaas-registrar/. datalakectl sends upload requests there.""",
    )
    icon_font = Unicode(
        "",
        config=True,
        help="Local copy of the Material Icons font (woff2) for the Rucio extension on closed networks.",
    )
    jupyter_config_path = Unicode(
        "",
        config=True,
        help="""Extra Jupyter config directory holding DLaaS's jupyter_server_config.py (JUPYTER_CONFIG_PATH).
        Images install that file into /etc/jupyter instead; the local stack points here at the repository.""",
    )

    def environment(self, spawner) -> dict[str, str]:
        username = spawner.user.name
        token_dir = self.token_dir.format(username=username)
        env = {
            "DLAAS_TOKEN_API_URL": spawner.hub.api_url.rstrip("/") + "/dlaas/tokens",
            "DLAAS_TOKEN_DIR": token_dir,
            "BEARER_TOKEN_FILE": f"{token_dir}/{self.rucio_token_file}",
            "OAUTH2_TOKEN": f"FILE:{token_dir}/{self.eos_token_file}",
            "RUCIO_ACCOUNT": username,
            "RUCIO_AUTH_TYPE": "oidc",
            "RUCIO_INSTANCE_NAME": self.rucio_instance_name,
            "RUCIO_DISPLAY_NAME": self.rucio_display_name,
            "RUCIO_CONFIG": self.rucio_config_path.format(username=username),
            "RUCIO_CACHE_DIR": self.rucio_cache_dir.format(username=username),
            "DLAAS_SCRATCH_MOUNT": self.scratch_mount.format(username=username),
            "DLAAS_SCRATCH_RSE": self.scratch_rse,
        }
        optional = {
            "RUCIO_BASE_URL": self.rucio_base_url,
            "RUCIO_AUTH_URL": self.rucio_auth_url or self.rucio_base_url,
            "RUCIO_SITE_NAME": self.rucio_site_name,
            # rucio-clients (CLI, Python, the extension's downloads) send it as client_location: cache PFNs
            "SITE_NAME": self.rucio_site_name,
            "RUCIO_DESTINATION_RSE": self.rucio_destination_rse,
            "RUCIO_RSE_MOUNT_PATH": self.rucio_rse_mount_path,
            "RUCIO_PATH_BEGINS_AT": str(self.rucio_path_begins_at) if self.rucio_rse_mount_path else "",
            "RUCIO_CA_CERT": self.rucio_ca_cert,
            "JUPYTER_CONFIG_PATH": self.jupyter_config_path,
            "DLAAS_REGISTRAR_URL": self.registrar_url,
            "DLAAS_ICON_FONT": self.icon_font,
        }
        env.update({k: v for k, v in optional.items() if v})
        return env


def apply(spawner) -> None:
    """pre_spawn_hook: add the Data Lake environment to the spawner's."""
    spawner.environment.update(DataLakeEnvironment(parent=spawner).environment(spawner))
