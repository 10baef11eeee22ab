"""The environment of a user's server, for any spawner: where to fetch tokens, where to write them, how to reach
Rucio. Never a token: the server fetches its tokens itself from the hub's token API (singleuser.token_agent).

The variable names, their defaults and meanings are singleuser.contract's, which the server reads back through
singleuser.server_settings. Set as the spawner's pre_spawn_hook by hub_plugins.hub_config.configure(c):

    c.DataLakeEnvironment.rucio_base_url = "https://rucio.example"
"""

from __future__ import annotations

from urllib.parse import urlsplit

from traitlets import Float, Integer, TraitError, Unicode, validate
from traitlets.config import Configurable

from singleuser import contract


class DataLakeEnvironment(Configurable):
    token_dir = Unicode(
        "/dev/shm/dlaas-{username}",
        config=True,
        help="""Memory-backed directory for the token files inside the user's server ({username} is replaced).
        On Kubernetes, a directory inside the mount of a medium=Memory emptyDir.""",
    )
    rucio_token_file = Unicode("rucio_token", config=True, help="Rucio token file name inside token_dir.")
    eos_token_file = Unicode("eos_token", config=True, help="EOS token file name inside token_dir.")

    rucio_base_url = Unicode(contract.RUCIO_URL.default, config=True, help=contract.RUCIO_URL.meaning)
    rucio_auth_url = Unicode(contract.RUCIO_AUTH.default, config=True, help=contract.RUCIO_AUTH.meaning)
    rucio_instance_name = Unicode(contract.INSTANCE_NAME.default, config=True, help=contract.INSTANCE_NAME.meaning)
    rucio_display_name = Unicode(contract.DISPLAY_NAME.default, config=True, help=contract.DISPLAY_NAME.meaning)
    rucio_site_name = Unicode(
        contract.CLIENT_SITE.default,
        config=True,
        help="""Site of the user's servers, given to the Rucio extension and to rucio-clients: Rucio then returns
        cache (XCache) PFNs for this site.""",
    )
    mounted_rse = Unicode(contract.MOUNTED_RSE.default, config=True, help=contract.MOUNTED_RSE.meaning)
    rucio_rse_mount_path = Unicode(contract.RSE_MOUNT_PATH.default, config=True, help=contract.RSE_MOUNT_PATH.meaning)
    rucio_path_begins_at = Integer(
        int(contract.PATH_BEGINS_AT.default), config=True, help=contract.PATH_BEGINS_AT.meaning
    )
    rucio_ca_cert = Unicode(contract.CA_CERT.default, config=True, help=contract.CA_CERT.meaning)
    rucio_timeout = Float(
        float(contract.RUCIO_TIMEOUT.default),
        config=True,
        help="""Seconds the Rucio sidebar (the Rucio extension's calls) waits for Rucio's answer before it says Rucio
        is not answering; a frozen or overloaded Rucio otherwise leaves its spinner turning. Big searches and replica
        lists must fit in it.""",
    )
    rucio_config_path = Unicode(
        "/tmp/dlaas-{username}/rucio.cfg",
        config=True,
        help="Where the user's server writes rucio.cfg for the rucio CLI and Python ({username} is replaced); no "
        "secret in it. The server accepts the directory only if it is the user's alone.",
    )

    @validate("rucio_timeout")
    def _positive_timeout(self, proposal):
        if proposal.value <= 0:
            raise TraitError(
                f"DataLakeEnvironment.rucio_timeout must be a number of seconds above 0, not {proposal.value}"
            )
        return proposal.value

    rucio_cache_dir = Unicode(
        "/tmp/rucio-jupyterlab-{username}",
        config=True,
        help="Per-user cache of the Rucio extension ({username} is replaced): the extension's own default is shared "
        "by every user of a machine.",
    )
    scratch_mount = Unicode(
        contract.SCRATCH_MOUNT.default,
        config=True,
        help="""Where the user's own scratch directory is mounted in the server ({username} is replaced). Only that
        user's directory: the registration service resolves upload paths inside it.""",
    )
    scratch_rse = Unicode(contract.SCRATCH_RSE.default, config=True, help=contract.SCRATCH_RSE.meaning)
    registrar_url = Unicode(
        contract.REGISTRAR_URL.default,
        config=True,
        help="""URL of the registration service (dlaas-registrar) that registers scratch uploads in Rucio, e.g.
        the hub's proxy + /services/dlaas-registrar/. datalakectl sends upload requests there.""",
    )
    icon_font = Unicode(contract.ICON_FONT.default, config=True, help=contract.ICON_FONT.meaning)
    jupyter_config_path = Unicode(
        contract.SERVER_CONFIG_PATH.default,
        config=True,
        help="""Extra Jupyter config directory holding DLaaS's jupyter_server_config.py. Images install that file
        into /etc/jupyter instead; the local stack points here at the repository.""",
    )

    dask_gateway_address = Unicode(
        contract.DASK_GATEWAY.default,
        config=True,
        help="""Dask Gateway's address for the notebooks' clients (empty: no Dask Gateway), e.g. the hub's URL +
        /services/dask-gateway. They authenticate with the server's own hub API token (singleuser/dask.yaml).""",
    )
    dask_gateway_proxy_address = Unicode(
        contract.DASK_GATEWAY_PROXY.default, config=True, help=contract.DASK_GATEWAY_PROXY.meaning
    )

    def environment(self, spawner) -> dict[str, str]:
        username = spawner.user.name
        token_dir = self.token_dir.format(username=username)
        always = {
            contract.TOKEN_API_URL: spawner.hub.api_url.rstrip("/") + "/dlaas/tokens",
            contract.TOKEN_DIR: token_dir,
            contract.RUCIO_TOKEN_FILE: f"{token_dir}/{self.rucio_token_file}",
            contract.EOS_TOKEN_FILE: f"FILE:{token_dir}/{self.eos_token_file}",
            contract.ACCOUNT: username,
            contract.AUTH_TYPE: contract.AUTH_TYPE.default,
            contract.INSTANCE_NAME: self.rucio_instance_name,
            contract.DISPLAY_NAME: self.rucio_display_name,
            contract.CLIENT_CONFIG: self.rucio_config_path.format(username=username),
            contract.EXTENSION_CACHE: self.rucio_cache_dir.format(username=username),
            contract.SCRATCH_MOUNT: self.scratch_mount.format(username=username),
            contract.SCRATCH_RSE: self.scratch_rse,
        }
        optional = {
            contract.RUCIO_URL: self.rucio_base_url,
            contract.RUCIO_AUTH: self.rucio_auth_url or self.rucio_base_url,
            contract.EXTENSION_SITE: self.rucio_site_name,
            # rucio-clients (CLI, Python, the extension's downloads) send it as client_location: cache PFNs
            contract.CLIENT_SITE: self.rucio_site_name,
            contract.MOUNTED_RSE: self.mounted_rse,
            contract.RSE_MOUNT_PATH: self.rucio_rse_mount_path,
            contract.PATH_BEGINS_AT: str(self.rucio_path_begins_at) if self.rucio_rse_mount_path else "",
            contract.CA_CERT: self.rucio_ca_cert,
            contract.RUCIO_TIMEOUT: f"{self.rucio_timeout:g}",
            contract.SERVER_CONFIG_PATH: self.jupyter_config_path,
            contract.REGISTRAR_URL: self.registrar_url,
            contract.ICON_FONT: self.icon_font,
            contract.DASK_GATEWAY: self.dask_gateway_address,
            contract.DASK_GATEWAY_PROXY: self.dask_gateway_proxy_address if self.dask_gateway_address else "",
            # Browsers reach the gateway on the hub's own address: dashboard links as paths, whatever address the
            # server uses for the gateway (inside a cluster, e.g. http://proxy-public/services/dask-gateway).
            contract.DASK_GATEWAY_PUBLIC: urlsplit(self.dask_gateway_address).path,
        }
        env = {var.name: value for var, value in always.items()}
        env.update({var.name: value for var, value in optional.items() if value})
        return env


def apply(spawner) -> None:
    """pre_spawn_hook: add the Data Lake environment to the spawner's."""
    spawner.environment.update(DataLakeEnvironment(parent=spawner).environment(spawner))
