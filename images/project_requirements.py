"""Print the project's dependencies for some extras (from pyproject.toml), one per line, for `pip install -r`.

The images install these from the package index first, then the project's own wheel by its file path with
`--no-index --no-deps`: the wheel built from this repository is the only `escape-dlaas` pip can see, so no package
of the same name on any index can take its place.

    python3 project_requirements.py pyproject.toml hub registrar > requirements.txt
    python3 project_requirements.py pyproject.toml "hub,registrar" > requirements.txt   # the same

Extras are separate arguments or comma-separated (as the images' DLAAS_EXTRAS build argument gives them).
Self-references (`escape-dlaas[hub,singleuser]` in another extra) are expanded; an unknown extra is an error.
"""

from __future__ import annotations

import re
import sys
import tomllib

_REQUIREMENT = re.compile(
    r"\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[(?P<extras>[^\]]*)\])?.*", re.S
)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(project: dict, extras: list[str]) -> list[str]:
    own = _normalize(project["name"])
    optional = project.get("optional-dependencies", {})
    found: list[str] = []
    expanded: set[str] = set()

    def add(reqs: list[str]) -> None:
        for req in reqs:
            match = _REQUIREMENT.fullmatch(req)
            if match is None:
                raise SystemExit(f"cannot read the requirement {req!r} in pyproject.toml")
            if _normalize(match["name"]) == own:
                for extra in (match["extras"] or "").split(","):
                    if extra.strip():
                        add_extra(extra.strip())
            elif req not in found:
                found.append(req)

    def add_extra(extra: str) -> None:
        if extra in expanded:
            return
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (it has: {', '.join(sorted(optional))})")
        expanded.add(extra)
        add(optional[extra])

    add(project.get("dependencies", []))
    for extra in extras:
        add_extra(extra)
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: project_requirements.py PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        project = tomllib.load(f)["project"]
    extras = [extra.strip() for arg in argv[1:] for extra in arg.split(",") if extra.strip()]
    print("\n".join(requirements(project, extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
