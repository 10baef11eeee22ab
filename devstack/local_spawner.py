"""The local stack's spawner: JupyterHub's local process spawner plus environment profiles on the spawn page.

On Kubernetes, KubeSpawner's profileList chooses an image (see flux/); locally a profile chooses which Jupyter
kernels the server offers and which one is the default, e.g. "ROOT files" adds a kernel with uproot and awkward.

Users' servers outlive a hub restart, as pods do under z2jh: the hub runs with `cleanup_servers` off, and a restarted
hub finds each server again from the state it saved (the PID, which JupyterHub's local spawner keeps, plus the
process's start time, kept here so that a recycled PID or a dead server's zombie is never taken for the server).
With `pidfile_dir` each server also leaves a pidfile there (devstack.pidfiles), by which `make down` and the stack
stop it even when no hub runs.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Integer, List, Unicode, default

from devstack.pidfiles import same_process, start_time, write_pidfile
from hub_plugins.server_ready import WaitsUntilListening
from singleuser import contract


class ProfilesLocalProcessSpawner(WaitsUntilListening, SimpleLocalProcessSpawner):
    profiles = List(
        config=True,
        help="""Environments offered on the spawn page: dicts with slug, display_name, description,
        default_kernel, and optionally jupyter_path (extra kernel specs).""",
    )

    scratch_dir_template = Unicode(
        "",
        config=True,
        help="""The user's own scratch directory ({username} is replaced), created 0700 before the server starts.
        On Kubernetes the volume's subPath creates it.""",
    )

    pidfile_dir = Unicode(
        "",
        config=True,
        help="""Directory where each server leaves a pidfile (user-<name>.pid: PID and start time), by which the
        local stack stops servers that outlived the hub. Empty: no pidfiles.""",
    )

    bin_dirs = List(
        Unicode(),
        config=True,
        help="""Directories put first on the server's PATH, as the images' PATH does: the `rucio` launcher that says
        "log in again" once the user's login has expired (singleuser.rucio_cli) comes before rucio-clients' own.""",
    )

    public_hub_url = Unicode(
        "",
        config=True,
        help="""The hub's public URL (ending in /hub/), given to the server as JUPYTERHUB_PUBLIC_HUB_URL, as
        JupyterHub does when JupyterHub.public_url is set (the local hub does not set it: its redirects would become
        absolute). `rucio` names the hub's login page with it (singleuser.expired_session.hub_login_url).""",
    )

    terminal_shell = Unicode(
        "/bin/bash",
        config=True,
        help="""The shell of the server's terminals, started as it is, not as a login shell: a login shell reads
        this machine's /etc/profile, which sets a PATH of the machine's own and drops the server's (bin_dirs and the
        user environment's commands). Empty: Jupyter's default, a login shell.""",
    )

    started_at = Integer(0, help="The server process's start time (clock ticks since boot), saved with its PID.")

    @property
    def pidfile(self) -> Path | None:
        if not self.pidfile_dir:
            return None
        suffix = f"-{self.name}" if self.name else ""
        return Path(self.pidfile_dir) / f"user-{self.user.escaped_name}{suffix}.pid"

    def load_state(self, state):
        super().load_state(state)
        self.started_at = state.get("started_at", 0)

    def get_state(self):
        state = super().get_state()
        if self.pid and self.started_at:
            state["started_at"] = self.started_at
        return state

    def clear_state(self):
        super().clear_state()
        self.started_at = 0

    async def poll(self):
        # A server found again after a hub restart (no Popen handle): the same process, not a recycled PID.
        found_again = self.proc is None and self.pid and self.started_at
        if found_again and not same_process({"pid": self.pid, "start": self.started_at}):
            self._forget_pidfile()
            self.clear_state()
            return 0
        status = await super().poll()
        if status is not None:
            self._forget_pidfile()
        return status

    async def stop(self, now=False):
        await super().stop(now=now)
        self._forget_pidfile()

    def _forget_pidfile(self) -> None:
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)

    async def start(self):
        if self.scratch_dir_template:
            path = self.scratch_dir_template.format(username=self.user.name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if os.path.islink(path) or not os.path.isdir(path):
                    raise ValueError(f"{path} is not a directory: remove it, then start the server again") from None
        address = await super().start()
        self.started_at = start_time(self.pid) or 0
        if self.pidfile is not None:
            write_pidfile(self.pidfile, self.pid, list(self.cmd))
        await self.wait_until_listening(*address, alive=lambda: self.proc is not None and self.proc.poll() is None)
        return address

    @default("options_form")
    def _options_form_default(self):
        if not self.profiles:
            return ""
        rows = []
        for i, p in enumerate(self.profiles):
            rows.append(
                f'<label class="dlaas-profile" style="display:block;margin:.6em 0">'
                f'<input type="radio" name="profile" value="{html.escape(p["slug"])}"{" checked" if i == 0 else ""}> '
                f"<b>{html.escape(p['display_name'])}</b><br><small>{html.escape(p.get('description', ''))}</small>"
                f"</label>"
            )
        return "<p>Choose an environment:</p>" + "".join(rows)

    def options_from_form(self, formdata):
        slug = (formdata.get("profile") or [self.profiles[0]["slug"] if self.profiles else ""])[0]
        return {"profile": slug}

    def _profile(self) -> dict | None:
        if not self.profiles:
            return None
        slug = (self.user_options or {}).get("profile") or self.profiles[0]["slug"]
        for profile in self.profiles:
            if profile["slug"] == slug:
                return profile
        raise ValueError(f"unknown environment {slug!r}: choose one of {[p['slug'] for p in self.profiles]}")

    def get_env(self):
        env = super().get_env()
        if self.bin_dirs:
            env["PATH"] = os.pathsep.join([*self.bin_dirs, env.get("PATH", os.defpath)])
        if self.public_hub_url and not env.get("JUPYTERHUB_PUBLIC_HUB_URL"):
            env["JUPYTERHUB_PUBLIC_HUB_URL"] = self.public_hub_url
        profile = self._profile()
        if profile:
            env[contract.PROFILE.name] = profile["slug"]
            if profile.get("jupyter_path"):
                env[contract.KERNEL_PATH.name] = profile["jupyter_path"]
        return env

    def get_args(self):
        args = super().get_args()
        if self.terminal_shell:
            args.append(f"--ServerApp.terminado_settings=shell_command={self.terminal_shell}")
        profile = self._profile()
        if profile and profile.get("default_kernel"):
            args.append(f"--MultiKernelManager.default_kernel_name={profile['default_kernel']}")
        return args
