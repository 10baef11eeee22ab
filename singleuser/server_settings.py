"""What the hub told this user's server, as traitlets: read from the environment the spawner gave it.

Every setting's default comes from the variable singleuser.contract names (and the contract's default when it is
unset), in a `@default` method, as oauthenticator reads its environment; configuration (c.ServerSettings.<trait>)
overrides it. The token agent, the Rucio configuration, the server extension and datalakectl read their settings
here and nowhere else, so a variable has one name and one default on this side too.

    settings = ServerSettings(parent=serverapp)           # the server's own environment
    settings = ServerSettings(environ={...})                # another environment (tests, tools)
"""

from __future__ import annotations

import os

from traitlets import Any, Bool, Integer, TraitError, Unicode, default
from traitlets.config import Configurable

from singleuser import contract
from singleuser.contract import Variable


def _from_env(var: Variable):
    """A @default method: the variable's value in `environ`, or the contract's default when it is unset or empty."""

    def read(self) -> str:
        return self.environ.get(var.name) or var.default

    return read


class ServerSettings(Configurable):
    environ = Any(help="The environment the settings are read from (os.environ unless given).")

    @default("environ")
    def _environ_default(self):
        return os.environ

    token_api_url = Unicode(config=True, help=contract.TOKEN_API_URL.meaning)
    _token_api_url = default("token_api_url")(_from_env(contract.TOKEN_API_URL))
    hub_api_token = Unicode(help=contract.HUB_API_TOKEN.meaning)  # a credential: never from configuration files
    _hub_api_token = default("hub_api_token")(_from_env(contract.HUB_API_TOKEN))
    token_dir = Unicode(config=True, help=contract.TOKEN_DIR.meaning)
    _token_dir = default("token_dir")(_from_env(contract.TOKEN_DIR))
    rucio_token_file = Unicode(config=True, help=contract.RUCIO_TOKEN_FILE.meaning)
    _rucio_token_file = default("rucio_token_file")(_from_env(contract.RUCIO_TOKEN_FILE))
    eos_token_file = Unicode(config=True, help=contract.EOS_TOKEN_FILE.meaning + " This is its path (no FILE:).")

    @default("eos_token_file")
    def _eos_token_file(self):
        return _from_env(contract.EOS_TOKEN_FILE)(self).removeprefix("FILE:")

    rucio_base_url = Unicode(config=True, help=contract.RUCIO_URL.meaning)
    _rucio_base_url = default("rucio_base_url")(_from_env(contract.RUCIO_URL))
    rucio_auth_url = Unicode(config=True, help=contract.RUCIO_AUTH.meaning)

    @default("rucio_auth_url")
    def _rucio_auth_url(self):
        return _from_env(contract.RUCIO_AUTH)(self) or self.rucio_base_url

    rucio_account = Unicode(config=True, help=contract.ACCOUNT.meaning)
    _rucio_account = default("rucio_account")(_from_env(contract.ACCOUNT))
    rucio_instance_name = Unicode(config=True, help=contract.INSTANCE_NAME.meaning)
    _rucio_instance_name = default("rucio_instance_name")(_from_env(contract.INSTANCE_NAME))
    rucio_display_name = Unicode(config=True, help=contract.DISPLAY_NAME.meaning)
    _rucio_display_name = default("rucio_display_name")(_from_env(contract.DISPLAY_NAME))
    rucio_site_name = Unicode(config=True, help=contract.EXTENSION_SITE.meaning)
    _rucio_site_name = default("rucio_site_name")(_from_env(contract.EXTENSION_SITE))
    rucio_ca_cert = Unicode(config=True, help=contract.CA_CERT.meaning)
    _rucio_ca_cert = default("rucio_ca_cert")(_from_env(contract.CA_CERT))
    mounted_rse = Unicode(config=True, help=contract.MOUNTED_RSE.meaning)
    _mounted_rse = default("mounted_rse")(_from_env(contract.MOUNTED_RSE))
    rse_mount_path = Unicode(config=True, help=contract.RSE_MOUNT_PATH.meaning)
    _rse_mount_path = default("rse_mount_path")(_from_env(contract.RSE_MOUNT_PATH))
    path_begins_at = Integer(config=True, help=contract.PATH_BEGINS_AT.meaning)

    @default("path_begins_at")
    def _path_begins_at(self):
        raw = _from_env(contract.PATH_BEGINS_AT)(self)
        try:
            return int(raw)
        except ValueError:
            raise TraitError(
                f"{contract.PATH_BEGINS_AT.name} must be an integer (path components to drop), not {raw!r}"
            ) from None

    rucio_config = Unicode(config=True, help=contract.CLIENT_CONFIG.meaning)
    _rucio_config = default("rucio_config")(_from_env(contract.CLIENT_CONFIG))
    rucio_cache_dir = Unicode(config=True, help=contract.EXTENSION_CACHE.meaning)
    _rucio_cache_dir = default("rucio_cache_dir")(_from_env(contract.EXTENSION_CACHE))
    scratch_mount = Unicode(config=True, help=contract.SCRATCH_MOUNT.meaning)
    _scratch_mount = default("scratch_mount")(_from_env(contract.SCRATCH_MOUNT))
    scratch_rse = Unicode(config=True, help=contract.SCRATCH_RSE.meaning)
    _scratch_rse = default("scratch_rse")(_from_env(contract.SCRATCH_RSE))
    registrar_url = Unicode(config=True, help=contract.REGISTRAR_URL.meaning)
    _registrar_url = default("registrar_url")(_from_env(contract.REGISTRAR_URL))
    icon_font = Unicode(config=True, help=contract.ICON_FONT.meaning)
    _icon_font = default("icon_font")(_from_env(contract.ICON_FONT))

    spawned = Bool(
        help=f"Whether this server was spawned by a hub or runs on Kubernetes ({contract.SERVICE_PREFIX.name} or "
        f"{contract.ON_KUBERNETES.name} set): the Rucio extension then keeps its cache in "
        f"{contract.EXTENSION_CACHE.name}, else in the home directory."
    )

    @default("spawned")
    def _spawned(self):
        return bool(_from_env(contract.SERVICE_PREFIX)(self) or _from_env(contract.ON_KUBERNETES)(self))

    home = Unicode(help=contract.HOME_DIR.meaning)

    @default("home")
    def _home(self):
        return _from_env(contract.HOME_DIR)(self) or os.path.expanduser("~")
