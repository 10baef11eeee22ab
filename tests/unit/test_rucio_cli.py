"""`rucio` in a user's server (singleuser.rucio_cli): once her login has expired it says "log in again" in the
sidebar's one line; with a valid token, or a token file it cannot judge, rucio-clients' own CLI speaks. The real
rucio-clients of this environment runs; the launcher runs as the images and the local stack install it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from devstack.settings import REPO
from singleuser import contract
from singleuser.rucio_cli import login_expired, main

HUB = "https://lake.example/hub/"
SAID = "Your Data Lake login has expired: log in again at https://lake.example/hub/login"
LAUNCHER = REPO / "singleuser" / "bin" / "rucio"


def token(tmp_path: Path, exp: float | None, name: str = "rucio_token") -> Path:
    path = tmp_path / name
    claims = {"sub": "alice", "aud": "rucio"} | ({"exp": int(exp)} if exp is not None else {})
    path.write_text(jwt.encode(claims, "k" * 32, algorithm="HS256"))
    return path


@pytest.fixture
def server_env(monkeypatch, tmp_path):
    """What alice's server gives `rucio`: her token file (absent until a test writes it) and the hub's public URL."""
    path = tmp_path / "rucio_token"
    monkeypatch.setenv(contract.RUCIO_TOKEN_FILE.name, str(path))
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_HUB_URL", HUB)
    return path


def test_a_removed_token_file_means_log_in_again(tmp_path):
    assert login_expired(str(tmp_path / "rucio_token"))
    assert login_expired(str(tmp_path / "gone" / "rucio_token"))


def test_an_expired_token_means_log_in_again(tmp_path):
    assert login_expired(str(token(tmp_path, time.time() - 5)))
    assert login_expired(str(token(tmp_path, 1000)), now=1000)


def test_a_valid_token_lets_rucio_run(tmp_path):
    assert not login_expired(str(token(tmp_path, time.time() + 600)))
    assert not login_expired(str(token(tmp_path, 1001)), now=1000)


@pytest.mark.parametrize(
    "content",
    [b"", b"not-a-jwt", b"a.b.c", b"\xff\xfe binary", None],
    ids=["empty", "opaque", "bad-jwt", "not-utf8", "a-directory"],
)
def test_a_token_file_it_cannot_judge_is_left_to_rucio(tmp_path, content):
    path = tmp_path / "rucio_token"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert not login_expired(str(path))


def test_a_token_without_exp_or_no_token_file_configured_is_left_to_rucio(tmp_path):
    assert not login_expired(str(token(tmp_path, None)))
    assert not login_expired(None) and not login_expired("")


def test_alice_with_an_expired_login_is_told_to_log_in_again_in_one_line(server_env, capsys):
    assert main(["whoami"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", SAID + "\n")
    token(server_env.parent, time.time() - 1)
    assert main(["did", "list", "escape:*"]) == 1
    assert capsys.readouterr().err == SAID + "\n"


def test_without_the_hubs_public_url_the_login_page_is_named_by_its_path(server_env, monkeypatch, capsys):
    monkeypatch.delenv("JUPYTERHUB_PUBLIC_HUB_URL")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/lake/")
    assert main(["whoami"]) == 1
    assert capsys.readouterr().err == "Your Data Lake login has expired: log in again at /lake/hub/login\n"


def rucio(args: list[str], token_file: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """This module as the `rucio` command, in a process of its own with no Rucio configuration anywhere."""
    env = {
        "PATH": "/usr/bin:/bin",
        "RUCIO_HOME": str(tmp_path),  # rucio-clients look for etc/rucio.cfg there first: there is none
        contract.RUCIO_TOKEN_FILE.name: str(token_file),
        "JUPYTERHUB_PUBLIC_HUB_URL": HUB,
    }
    command = [sys.executable, "-P", "-m", "singleuser.rucio_cli", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_with_a_valid_token_rucio_clients_cli_runs_unchanged(tmp_path):
    path = token(tmp_path, time.time() + 600)
    version = rucio(["--version"], path, tmp_path)
    assert version.returncode == 0 and re.fullmatch(r"rucio \d+\.\d+\.\d+\n", version.stdout), version
    # Its own errors and exit status come through (here: no Rucio configuration).
    whoami = rucio(["whoami"], path, tmp_path)
    said = whoami.stdout + whoami.stderr
    assert whoami.returncode == 1 and "Configuration not found" in said and "log in again" not in said


def test_with_a_token_file_it_cannot_judge_rucio_clients_speaks(tmp_path):
    path = tmp_path / "rucio_token"
    path.write_text("garbage")
    whoami = rucio(["whoami"], path, tmp_path)
    said = whoami.stdout + whoami.stderr
    assert whoami.returncode == 1 and "Configuration not found" in said and "log in again" not in said


def test_the_launcher_runs_its_environments_python_never_a_module_of_the_working_directory(tmp_path):
    """Installed as <prefix>/lib/dlaas/bin/rucio, it runs <prefix>/bin/python; a jwt.py where the user stands is
    not imported (python -P)."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    installed = prefix / "lib" / "dlaas" / "bin" / "rucio"
    installed.parent.mkdir(parents=True)
    shutil.copy(LAUNCHER, installed)
    work = tmp_path / "work"
    work.mkdir()
    (work / "jwt.py").write_text("raise SystemExit('a module of the working directory was imported')\n")
    env = {
        "PATH": f"{installed.parent}:/usr/bin:/bin",
        contract.RUCIO_TOKEN_FILE.name: str(tmp_path / "rucio_token"),
        "JUPYTERHUB_PUBLIC_HUB_URL": HUB,
    }
    done = subprocess.run(["rucio", "whoami"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", SAID + "\n")


def dockerfile_path(name: str) -> list[str]:
    """The PATH an image's Dockerfile sets (its last ENV PATH), as a list of directories."""
    found = re.findall(r"^ENV PATH=(\S+)", (REPO / "images" / name / "Dockerfile").read_text(), re.M)
    return found[-1].split(":") if found else []


@pytest.mark.parametrize("name, python_prefix", [("singleuser", "/usr/local"), ("singleuser-alma", "/opt/dlaas")])
def test_every_user_image_puts_the_launcher_first_on_path(name, python_prefix):
    text = (REPO / "images" / name / "Dockerfile").read_text()
    assert re.search(rf"^COPY --chmod=755 singleuser/bin/rucio {python_prefix}/lib/dlaas/bin/rucio$", text, re.M)
    assert dockerfile_path(name)[0] == f"{python_prefix}/lib/dlaas/bin"
    assert LAUNCHER.stat().st_mode & 0o111  # the local stack's copy keeps the mode (devstack.bootstrap)


def test_the_root_image_keeps_the_base_images_path():
    text = (REPO / "images" / "singleuser-root" / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M) and dockerfile_path("singleuser-root") == []


def test_the_base_images_login_shells_find_the_launcher_first():
    """JupyterLab's terminals are login shells: Debian's /etc/profile sets a PATH of its own, then the line the base
    image (and the ROOT image on it) writes into /etc/profile.d puts the launcher first again."""
    text = (REPO / "images" / "singleuser" / "Dockerfile").read_text()
    line = re.search(r"^RUN printf '%s\\n' '(.+)' > /etc/profile\.d/[\w-]+\.sh$", text, re.M).group(1)
    debian = 'PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"'  # /etc/profile, for a user
    done = subprocess.run(["sh", "-c", f'{debian}; {line}; echo "$PATH"'], capture_output=True, text=True, timeout=30)
    assert done.stdout.split(":")[:2] == ["/usr/local/lib/dlaas/bin", "/usr/local/bin"]
