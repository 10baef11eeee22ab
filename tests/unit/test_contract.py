"""The hub-to-server contract: each environment variable between the hub and a user's server is named in one place
(singleuser.contract); the hub's spawner and the server's code take the names from there, so grep finds each name
in that one definition."""

import re
from pathlib import Path

from singleuser import contract

REPO = Path(__file__).resolve().parents[2]
#: The hub side and the server side of the contract, and the hub's values (tests and docs name them as they like).
SOURCES = [
    *REPO.glob("hub_plugins/**/*.py"),
    *REPO.glob("singleuser/**/*.py"),
    *(REPO / "devstack" / name for name in ("hub.py", "jupyterhub_config.py", "local_spawner.py")),
    REPO / "flux" / "apps" / "base" / "jupyterhub" / "values.yaml",
]
VARIABLES = [*contract.FROM_HUB, *contract.FROM_OTHERS]


def grep(name: str, paths, root: Path = REPO) -> list[str]:
    """The paths whose text holds `name` as a whole word, as `grep -lw` finds them."""
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")
    return sorted(str(p.relative_to(root)) for p in paths if word.search(p.read_text()))


def test_grep_finds_each_variable_in_the_contract_only():
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)
    found = {var.name: grep(var.name, SOURCES) for var in VARIABLES}
    assert found == {var.name: ["singleuser/contract.py"] for var in VARIABLES}


def test_a_name_written_outside_the_contract_is_found(tmp_path):
    (tmp_path / "sneaky.py").write_text('env = {"DLAAS_TOKEN_DIR": "/x"}\n')
    (tmp_path / "fine.py").write_text("token_dir = contract.TOKEN_DIR.name  # DLAAS_TOKEN_DIRS is another word\n")
    assert grep("DLAAS_TOKEN_DIR", [tmp_path / "sneaky.py", tmp_path / "fine.py"], tmp_path) == ["sneaky.py"]


def test_every_variable_says_what_it_means():
    for var in VARIABLES:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", var.name) and len(var.meaning) > 20, var
