"""The ROOT C++ kernel (JupyROOT's, from the official ROOT build) with the kernel side of "Add to Notebook".

rucio-jupyterlab attaches DIDs to a notebook and hands them to its kernel over Jupyter comms: the sidebar opens a comm
to the kernel's target `rucio-jupyterlab:kernel` and sends {"action": "inject", "dids": [...]}; the kernel may open a
comm to the sidebar's target `rucio-jupyterlab:frontend` and send {"action": "request-inject"} (the sidebar answers
with an `inject` on that comm) and acknowledges each injection with {"action": "ack-inject", "variable_names": [...]}.
The extension ships this side for IPython only; here each attached DID becomes a C++ global `rucio::DID`
(singleuser.did_cpp) that TFile::Open and RDataFrame read: the files' paths on the storage mount (from the sidebar)
and the root:// URLs Rucio gives this site (asked here with the user's token and the site the hub set,
contract.CLIENT_SITE, so they go through the site's XCache). `%resolve_dids` asks the sidebar again, as
`resolve_dids()` does in Python.

Started by the kernel spec singleuser.root_environment writes:  python -m singleuser.root_kernel -f CONNECTION_FILE
"""

from __future__ import annotations

import logging
import sys
import threading

from singleuser.did_cpp import DECLARATION, AttachmentError, fill_function

KERNEL_TARGET = "rucio-jupyterlab:kernel"
FRONTEND_TARGET = "rucio-jupyterlab:frontend"

log = logging.getLogger("dlaas.root_kernel")


class Attachments:
    """The kernel side of the sidebar's comm protocol, turning each attached DID into a C++ variable.

    `declare(code) -> bool` compiles C++ declarations, `define(name) -> bool` makes a global `rucio::DID name` (or
    says whether the existing global of that name is one), `call(function)` runs a declared `void function()`, and
    `open_comm(target)` opens a comm to the frontend, `site_urls(did) -> list` lists the root:// URLs for a DID's
    files (injected, so the protocol is testable without a kernel or a Rucio server)."""

    def __init__(self, declare, define, call, open_comm, site_urls=lambda did: []):
        self.declare = declare
        self.define = define
        self.call = call
        self.open_comm = open_comm
        self.site_urls = site_urls
        self.declared: set[str] = set()
        self.frontend = None
        self.functions = 0

    def opened(self, comm, msg) -> None:
        """Target callback of `rucio-jupyterlab:kernel`: the sidebar opened a comm to inject."""
        comm.on_msg(self.received)
        if (msg.get("content", {}).get("data") or {}).get("action"):
            self.received(msg)

    def received(self, msg) -> None:
        data = msg.get("content", {}).get("data") or {}
        if data.get("action") == "inject":
            self.send({"action": "ack-inject", "variable_names": self.inject(data.get("dids") or [])})

    def request(self) -> None:
        """Ask the sidebar for this notebook's attachments (it answers with `inject` on the frontend comm)."""
        self.send({"action": "request-inject"})

    def send(self, data: dict) -> None:
        if self.frontend is None:
            self.frontend = self.open_comm(FRONTEND_TARGET)
            self.frontend.on_msg(self.received)
        self.frontend.send(data=data)

    def inject(self, dids: list) -> list[str]:
        """Define or refill one C++ variable per attachment; returns the names injected (others are logged)."""
        if not self.declared and not self.declare(DECLARATION):
            log.error("rucio::DID did not compile: attachments are not injected")
            return []
        injected = []
        for attachment in dids:
            try:
                self.functions += 1
                name, code = fill_function(
                    f"dlaas_rucio_inject_{self.functions}", attachment, self.urls(attachment.get("did"))
                )
            except AttachmentError as e:
                log.error("attachment not injected: %s", e)
                continue
            if name not in self.declared:
                if not self.define(name):
                    log.error("attachment not injected: %s already names something else in this kernel", name)
                    continue
                self.declared.add(name)
            if not self.declare(code):
                log.error("attachment %s not injected: its C++ did not compile", name)
                continue
            self.call(f"dlaas_rucio_inject_{self.functions}")
            injected.append(name)
        return injected

    def urls(self, did) -> list[str]:
        if not isinstance(did, str) or ":" not in did:
            return []
        try:
            return list(self.site_urls(did))
        except Exception as e:  # Rucio down or refusing: the mount paths still work
            log.warning("no root:// URLs for %s: %s", did, e)
            return []


def site_urls(did: str) -> list[str]:
    """The root:// URL Rucio gives this site for each file of `did` (client location from contract.CLIENT_SITE:
    through the site's XCache when Rucio knows one), in file name order."""
    from rucio.client import Client
    from rucio.common.client import detect_client_location

    scope, _, name = did.partition(":")
    replicas = Client().list_replicas(
        [{"scope": scope, "name": name}], schemes=["root"], client_location=detect_client_location()
    )
    return [next(iter(r["pfns"])) for r in sorted(replicas, key=lambda r: r["name"]) if r.get("pfns")]


def kernel_class():
    """RucioROOTKernel: JupyROOT's ROOTKernel plus Attachments (imports ROOT: only inside the kernel process)."""
    import comm
    import ROOT
    from metakernel import Magic
    from ROOT._jupyroot.helpers.utils import initializeJSVis
    from ROOT._jupyroot.kernel.rootkernel import ROOTKernel

    class RucioMagics(Magic):
        def line_resolve_dids(self):
            """%resolve_dids - ask the Rucio sidebar to inject this notebook's attached DIDs again."""
            self.kernel.attachments.request()

    def define_did(name: str) -> bool:
        # A global with a constructor defined through Declare fails to initialise once JupyROOT's completer is
        # active ("Failed to materialize symbols"); defined as a statement, as a cell would, it works.
        if ROOT.gROOT.GetClass(name) or ROOT.gROOT.GetListOfGlobalFunctions(True).FindObject(name):
            return False  # a type, namespace or function of that name: a variable would hide it
        if not ROOT.gROOT.GetGlobal(name, True):
            ROOT.gInterpreter.ProcessLine(f"rucio::DID {name};")
        found = ROOT.gROOT.GetGlobal(name, True)
        return bool(found) and found.GetTypeName() == "rucio::DID"

    class RucioROOTKernel(ROOTKernel):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # JupyROOT's C++ kernel draws with JSROOT, whose code it loads from public web servers, whatever
            # `Jupyter.JSRoot` says (only its Python side reads it): read it here too, off unless a user turns it on.
            initializeJSVis()
            self.attachments = Attachments(
                declare=lambda code: bool(self.on_poller(ROOT.gInterpreter.Declare, code)),
                define=lambda name: bool(self.on_poller(define_did, name)),
                call=lambda function: self.on_poller(lambda name: getattr(ROOT, name)(), function),
                open_comm=lambda target: comm.create_comm(target_name=target),
                site_urls=site_urls,
            )
            self.comm_manager.register_target(KERNEL_TARGET, self.attachments.opened)
            self.register_magics(RucioMagics)

        def on_poller(self, function, argument):
            """Run function(argument) on JupyROOT's poller thread, where the kernel runs all C++ (cling's JIT
            fails to materialise symbols for code declared from another thread), and return its result."""
            done, result = threading.Event(), []

            def work(arg):
                try:
                    result.append(function(arg))
                finally:
                    done.set()

            self.Poller.queue.put((work, argument))
            done.wait()
            return result[0] if result else None

    return RucioROOTKernel


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.__stderr__, format="[dlaas.root_kernel] %(message)s")
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(kernel_class=kernel_class())


if __name__ == "__main__":
    main()
