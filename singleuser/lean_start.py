"""`dlaas-singleuser`: jupyterhub-singleuser, started without loading the hub's database layer.

jupyterhub-singleuser (JupyterHub 6.1) takes its access-log function from `jupyterhub.log`. That module imports the
hub's request handlers for one class (the hub's health check, which it logs quietly) and the hub's metrics, and both
import the ORM; `jupyterhub.utils` imports `sqlalchemy.exc` too. A single-user server runs none of that code, yet
loading it - SQLAlchemy, Alembic, Mako, Pygments, cryptography, the hub's handlers, user and spawner modules - was
about 0.5 s of CPU at every server start, more than everything else DLaaS adds (docs/benchmarks.md, time to
JupyterLab; `bench/bench_time_to_lab.py --imports` lists the modules a DLaaS server loads that a bare JupyterLab
does not).

`main()` runs jupyterhub-singleuser's own `main()` after putting an import hook first on sys.meta_path. The hook
defers running a few modules' code until something uses them; nothing is replaced:

- `sqlalchemy`, `jupyterhub.handlers`: packages whose `__init__` runs at the first use of one of their names. Their
  submodules import as usual meanwhile (`sqlalchemy.exc` loads `sqlalchemy.util`, not the engine).
- `jupyterhub.orm`, `jupyterhub.roles`: modules that run at the first use of one of their names.
- `jupyterhub.handlers.pages`: `jupyterhub.log` takes `HealthCheckHandler` from it at import, for an isinstance test
  in its log function. It gets a class of its own, which no handler of a single-user server is (the hub serves its
  health check itself). Any other name loads the real module into the same module object.

A deferred module that is used loads then, as the plain import would have, only later. tests/unit/test_lean_start.py
checks the mechanism on packages of its own; tests/integration/test_lean_start.py starts a real server through the
hub and checks from outside that SQLAlchemy's engine never came into its process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types

# Module attributes the import system itself reads and writes: reading them must not run a deferred module.
IMPORT_METADATA = frozenset(
    {"__name__", "__path__", "__spec__", "__loader__", "__package__", "__file__", "__cached__", "__class__", "__dict__"}
)
DEFERRED = frozenset({"sqlalchemy", "jupyterhub.handlers", "jupyterhub.orm", "jupyterhub.roles"})
# Module -> the names it must give at import without running: stand-in classes (module docstring).
STAND_INS = {"jupyterhub.handlers.pages": ("HealthCheckHandler",)}
_REAL_LOADER = "__dlaas_deferred_loader__"
_RUNNING = threading.RLock()  # held while a deferred or stand-in module runs its real code
_IN_PROGRESS = object()  # in place of the real loader while a deferred module runs


class DeferredModule(types.ModuleType):
    """A module whose code has not run yet: the first use of a name that is not import metadata runs it.

    A package's submodules that are already imported are handed out without running the package: that is how
    `from .. import exc` inside a submodule, and the import system's own checks, see them.
    """

    def __getattribute__(self, name):
        namespace = super().__getattribute__("__dict__")
        if name in IMPORT_METADATA or _REAL_LOADER not in namespace:
            return super().__getattribute__(name)
        submodule = sys.modules.get(f"{namespace['__name__']}.{name}")
        if submodule is not None:
            return submodule
        run_deferred(self)
        return types.ModuleType.__getattribute__(self, name)


def run_deferred(module: types.ModuleType) -> None:
    """Run a deferred module's code now (once), and leave it an ordinary module with its real loader. Another thread
    that uses the module meanwhile waits until it ran, as it would for an import in progress; the module's own code
    using it while it runs sees it partly run, as in a circular import."""
    namespace = module.__dict__
    with _RUNNING:
        loader = namespace.get(_REAL_LOADER)
        if loader is None or loader is _IN_PROGRESS:
            return
        namespace[_REAL_LOADER] = _IN_PROGRESS
        module.__loader__ = module.__spec__.loader = loader
        try:
            loader.exec_module(module)
        finally:
            del namespace[_REAL_LOADER]
            module.__class__ = types.ModuleType


def _real_attribute(loader, name: str):
    real = loader.__dict__.get("real")  # not self.real: no recursion while the loader is half-built (copy, pickle)
    if real is None:
        raise AttributeError(name)
    return getattr(real, name)


class DeferringLoader(importlib.abc.Loader):
    """Creates the module as its real loader would, and keeps that loader for the module's first use."""

    def __init__(self, real: importlib.abc.Loader):
        self.real = real

    def __getattr__(self, name):  # the rest of a loader's interface (is_package, get_resource_reader, ...)
        return _real_attribute(self, name)

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        module.__dict__[_REAL_LOADER] = self.real
        module.__class__ = DeferredModule


class StandInLoader(importlib.abc.Loader):
    """A module that holds only stand-in classes for `names`; the first use of any other name runs the real module
    into the same module object (which then holds the real classes too)."""

    def __init__(self, real: importlib.abc.Loader, names: tuple[str, ...]):
        self.real, self.names = real, names

    def __getattr__(self, name):
        return _real_attribute(self, name)

    def exec_module(self, module):
        real = self.real

        def load_real(name):
            if name.startswith("__"):
                raise AttributeError(name)
            with _RUNNING:
                if module.__dict__.pop("__getattr__", None) is not None:
                    module.__loader__ = module.__spec__.loader = real
                    real.exec_module(module)
            return getattr(module, name)

        for name in self.names:
            setattr(module, name, type(name, (), {"__module__": module.__name__, "__doc__": "A stand-in."}))
        module.__getattr__ = load_real


class LeanImports(importlib.abc.MetaPathFinder):
    """Finds the deferred and stand-in modules as the path finder does and wraps their loaders; every other import
    is left to the finders after it."""

    def __init__(self, deferred=DEFERRED, stand_ins=STAND_INS):
        self.deferred, self.stand_ins = frozenset(deferred), dict(stand_ins)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.deferred and fullname not in self.stand_ins:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        if fullname in self.stand_ins:
            spec.loader = StandInLoader(spec.loader, self.stand_ins[fullname])
        else:
            spec.loader = DeferringLoader(spec.loader)
        return spec


def install(hook: LeanImports | None = None) -> LeanImports:
    """Put the hook first on sys.meta_path (once); only modules imported after this are deferred."""
    for finder in sys.meta_path:
        if isinstance(finder, LeanImports):
            return finder
    hook = hook or LeanImports()
    sys.meta_path.insert(0, hook)
    return hook


def main() -> None:
    install()
    from jupyterhub.singleuser import main as singleuser_main

    sys.exit(singleuser_main())


if __name__ == "__main__":
    main()
