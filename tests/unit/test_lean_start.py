"""singleuser.lean_start: deferred modules run at their first use, never at import; stand-ins give the one name
asked at import and load the real module for any other; JupyterHub's single-user server imports without its
database layer and still works.

The mechanism is checked on packages written into a temporary directory; JupyterHub itself in a subprocess of the
user environment (.venvs/singleuser), whose JupyterHub release the images ship.
"""

import json
import subprocess
import sys
import textwrap
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from devstack.settings import VENVS
from singleuser import lean_start

PACKAGE = {
    "lean_record.py": "ran = []\n",
    "leanpkg/__init__.py": """
        import lean_record
        lean_record.ran.append("leanpkg")
        from . import sub
        VALUE = 42
    """,
    "leanpkg/sub.py": """
        import lean_record
        lean_record.ran.append("leanpkg.sub")
        from .helper import HELP
        ANSWER = HELP + 1
    """,
    "leanpkg/helper.py": """
        from . import sub  # reaches a submodule still being imported through its package, as sqlalchemy.util does
        HELP = 1
    """,
    "leanpkg/other.py": "OTHER = 3\n",
    "leanpkg/page.py": """
        import lean_record
        lean_record.ran.append("leanpkg.page")
        class Handler:
            real = True
        class Other:
            pass
    """,
    "leanslow.py": """
        import time
        import lean_record
        lean_record.ran.append("leanslow")
        time.sleep(0.3)
        VALUE = "slow"
    """,
    "leanmod.py": """
        import lean_record
        lean_record.ran.append("leanmod")
        NAME = "leanmod"
    """,
}


@pytest.fixture
def hooked(tmp_path, monkeypatch):
    """The packages above on sys.path with a hook of their own first on sys.meta_path; all undone afterwards."""
    for name, text in PACKAGE.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = lean_start.LeanImports(deferred={"leanpkg", "leanmod", "leanslow"}, stand_ins={"leanpkg.page": ("Handler",)})
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in ("leanpkg", "leanmod", "leanslow", "lean_record")]:
        del sys.modules[name]


def ran():
    import lean_record

    return lean_record.ran


def test_a_submodule_imports_without_running_its_package(hooked):
    import leanpkg.sub

    assert leanpkg.sub.ANSWER == 2
    assert ran() == ["leanpkg.sub"]
    assert type(sys.modules["leanpkg"]) is lean_start.DeferredModule


def test_the_first_use_of_a_name_runs_the_package_once_with_its_real_loader(hooked):
    import leanpkg
    import leanpkg.sub

    assert ran() == ["leanpkg.sub"]
    assert leanpkg.sub is sys.modules["leanpkg.sub"]  # an imported submodule is not a use of the package
    assert ran() == ["leanpkg.sub"]
    assert leanpkg.VALUE == 42
    assert leanpkg.VALUE == 42
    assert ran() == ["leanpkg.sub", "leanpkg"]
    assert type(leanpkg) is types.ModuleType
    assert type(leanpkg.__loader__).__name__ == "SourceFileLoader"
    assert leanpkg.__spec__.loader is leanpkg.__loader__


def test_a_deferred_module_runs_at_first_use_and_import_metadata_does_not_run_it(hooked):
    import leanmod

    assert leanmod.__name__ == "leanmod" and leanmod.__spec__.name == "leanmod" and leanmod.__file__.endswith(".py")
    assert not hasattr(leanmod, "__path__")
    import leanmod as again  # importing it again is no use either

    assert again is leanmod
    assert ran() == []
    assert leanmod.NAME == "leanmod"
    assert ran() == ["leanmod"]


def test_importing_a_submodule_not_yet_imported_from_the_package_runs_the_package(hooked):
    # The import system asks the package for the name first: the package runs, as a plain import would have.
    from leanpkg import other

    assert other.OTHER == 3
    assert "leanpkg" in ran()


def test_an_unknown_name_of_a_deferred_module_is_an_attribute_error_after_it_ran(hooked):
    import leanmod

    with pytest.raises(AttributeError):
        leanmod.missing  # noqa: B018
    assert ran() == ["leanmod"]


def test_a_stand_in_gives_its_name_without_running_and_any_other_name_loads_the_real_module(hooked):
    from leanpkg.page import Handler

    assert ran() == []
    assert not hasattr(Handler, "real")
    from leanpkg.page import Other

    assert ran() == ["leanpkg.page"]
    page = sys.modules["leanpkg.page"]
    assert page.Handler.real is True and Other is page.Other
    assert type(page.__loader__).__name__ == "SourceFileLoader"
    assert ran() == ["leanpkg.page"]  # the package itself still has not run


def test_threads_using_a_deferred_module_at_once_all_wait_for_it_to_have_run(hooked):
    import leanslow

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: leanslow.VALUE, range(4))) == ["slow"] * 4
    assert ran() == ["leanslow"]


def test_modules_outside_the_hook_import_as_usual(hooked):
    import lean_record

    assert type(lean_record) is types.ModuleType and lean_record.ran == []


def test_install_puts_one_hook_first():
    before = list(sys.meta_path)
    try:
        hook = lean_start.install()
        assert sys.meta_path[0] is hook
        assert lean_start.install() is hook
        assert sum(isinstance(f, lean_start.LeanImports) for f in sys.meta_path) == 1
    finally:
        sys.meta_path[:] = before


SINGLEUSER_CHECK = """
import asyncio, json, logging, sys
from singleuser import lean_start
lean_start.install()
import jupyterhub.singleuser
from jupyterhub.log import log_request
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic", "mako", "jupyterhub"))
records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("tornado.access").addHandler(handler)
logging.getLogger("tornado.access").setLevel(logging.DEBUG)

class Lab(RequestHandler):
    def get(self):
        self.write("lab")

async def serve_one_request():
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([("/user/alice/lab", Lab)], log_function=log_request))
    server.add_sockets(sockets)
    answer = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{sockets[0].getsockname()[1]}/user/alice/lab")
    server.stop()
    return answer.body.decode()

body = asyncio.run(serve_one_request())
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub import orm
print(json.dumps({
    "loaded": loaded,
    "body": body,
    "logged": [r.getMessage() for r in records],
    "spawn_handler": SpawnHandler.__module__,
    "orm_user_table": orm.User.__tablename__,
    "engine_after": "sqlalchemy.engine" in sys.modules,
}))
"""


def test_the_single_user_server_imports_without_the_hubs_database_layer_and_logs_requests():
    python = VENVS / "singleuser" / "bin" / "python"
    run = subprocess.run([str(python), "-c", SINGLEUSER_CHECK], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    loaded = set(got["loaded"])
    assert "jupyterhub.singleuser" in loaded and "jupyterhub.log" in loaded
    for never in ("sqlalchemy.engine", "sqlalchemy.orm", "alembic", "mako", "jupyterhub.user", "jupyterhub.spawner"):
        assert never not in loaded, f"{never} was imported with jupyterhub.singleuser"
    assert got["body"] == "lab"
    assert any("200 GET /user/alice/lab" in line for line in got["logged"]), got["logged"]
    # What a single-user server does not use stays reachable: the real modules load on first use.
    assert got["spawn_handler"] == "jupyterhub.handlers.pages"
    assert got["orm_user_table"] == "users" and got["engine_after"] is True


def test_every_way_of_starting_a_server_uses_the_lean_start():
    """Production (the Helm values' command, the images' CMD) and the local stack start `dlaas-singleuser`."""
    import tomllib
    from pathlib import Path

    import yaml

    from devstack import hub

    repo = Path(__file__).resolve().parents[2]
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dlaas-singleuser"] == "singleuser.lean_start:main"
    values = yaml.safe_load((repo / "flux/apps/base/jupyterhub/values.yaml").read_text())
    assert values["singleuser"]["cmd"] == "dlaas-singleuser"
    for image in ("singleuser", "singleuser-alma"):
        assert 'CMD ["dlaas-singleuser"]' in (repo / "images" / image / "Dockerfile").read_text().splitlines()
    assert hub.SINGLEUSER.name == "dlaas-singleuser"
