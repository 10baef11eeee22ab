"""The local stack's spawner: JupyterHub's local process spawner plus environment profiles on the spawn page.

On Kubernetes, KubeSpawner's profileList chooses an image (see flux/); locally a profile chooses which Jupyter
kernels the server offers and which one is the default, e.g. "ROOT files" adds a kernel with uproot and awkward.
"""

from __future__ import annotations

import html
import os

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import List, Unicode, default

from singleuser import contract


class ProfilesLocalProcessSpawner(SimpleLocalProcessSpawner):
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

    async def start(self):
        if self.scratch_dir_template:
            path = self.scratch_dir_template.format(username=self.user.name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if os.path.islink(path) or not os.path.isdir(path):
                    raise ValueError(f"{path} is not a directory: remove it, then start the server again") from None
        return await super().start()

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
        profile = self._profile()
        if profile:
            env[contract.PROFILE.name] = profile["slug"]
            if profile.get("jupyter_path"):
                env[contract.KERNEL_PATH.name] = profile["jupyter_path"]
        return env

    def get_args(self):
        args = super().get_args()
        profile = self._profile()
        if profile and profile.get("default_kernel"):
            args.append(f"--MultiKernelManager.default_kernel_name={profile['default_kernel']}")
        return args
