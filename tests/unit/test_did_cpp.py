"""What "Add to Notebook" hands the ROOT C++ kernel: C++ that compiles, names that can be C++ globals, strings that
survive any path, and the comm protocol's answers (acknowledgements, refusals, requests)."""

import re
import shutil
import subprocess

import pytest

from singleuser.did_cpp import DECLARATION, AttachmentError, fill_function, string_literal, variable_name
from singleuser.root_kernel import FRONTEND_TARGET, Attachments

HIGGS = {
    "type": "collection",
    "variableName": "higgs",
    "did": "escape_demo:higgs-candidates",
    "didAvailable": True,
    "files": [{"path": f"/eos/lake/higgs-candidates.0{i}.root", "pfn": f"file://localhost/lake/{i}"} for i in range(3)],
}


@pytest.mark.parametrize("name", ["higgs", "_data", "run2_muons", "H4l"])
def test_identifiers_are_accepted(name):
    assert variable_name(name) == name


@pytest.mark.parametrize(
    "name, why",
    [
        ("2fast", "not a C++ variable name"),
        ("my-data", "not a C++ variable name"),
        ("données", "not a C++ variable name"),
        ("new", "reserved"),
        ("class", "reserved"),
        ("a__b", "reserved"),
        ("_Upper", "reserved"),
        (None, "not a C++ variable name"),
    ],
)
def test_names_that_cannot_be_cpp_globals_are_refused_with_the_reason(name, why):
    with pytest.raises(AttachmentError, match=re.escape(why)):
        variable_name(name)


def test_strings_are_escaped_whatever_the_path_holds():
    assert string_literal('a"b\\c') == '"a\\"b\\\\c"'
    assert string_literal("é\n") == '"\\303\\251\\012"'


def test_a_dataset_becomes_a_vector_of_paths_with_its_pfns_and_urls():
    name, code = fill_function("f1", HIGGS, ["root://cache//root://origin/a.root"])
    assert name == "higgs"
    assert code.count("higgs.push_back(") == 3 and code.count("higgs.pfns.push_back(") == 3
    assert 'higgs.urls.push_back("root://cache//root://origin/a.root");' in code
    assert 'higgs.name = "escape_demo:higgs-candidates";' in code and "higgs.available = true;" in code


def test_a_file_not_available_yet_is_an_empty_unavailable_did():
    _, code = fill_function("f2", {"type": "file", "variableName": "one", "did": "s:f", "files": None})
    assert "one.available = false;" in code and "push_back" not in code


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")
def test_the_generated_cpp_compiles(tmp_path):
    _, fill = fill_function("dlaas_rucio_inject_1", {**HIGGS, "did": 'odd "scope":name\\é'}, ["root://x"])
    source = tmp_path / "inject.cpp"
    source.write_text(DECLARATION + DECLARATION + "rucio::DID higgs;\n" + fill)  # declared twice: guarded
    result = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


class FakeComm:
    def __init__(self, target):
        self.target, self.sent, self.handlers = target, [], []

    def on_msg(self, handler):
        self.handlers.append(handler)

    def send(self, data):
        self.sent.append(data)


def attachments(defined_elsewhere=()):
    calls = {"declare": [], "define": [], "call": [], "comms": []}

    def open_comm(target):
        calls["comms"].append(FakeComm(target))
        return calls["comms"][-1]

    def define(name):
        calls["define"].append(name)
        return name not in defined_elsewhere

    kernel = Attachments(
        declare=lambda code: calls["declare"].append(code) or True,
        define=define,
        call=calls["call"].append,
        open_comm=open_comm,
        site_urls=lambda did: [f"root://cache//root://origin/{did}"],
    )
    return kernel, calls


def inject_message(*dids):
    return {"content": {"data": {"action": "inject", "dids": list(dids)}}}


def test_an_inject_defines_the_variable_once_fills_it_and_acknowledges_it():
    kernel, calls = attachments()
    sidebar = FakeComm("rucio-jupyterlab:kernel")
    kernel.opened(sidebar, {"content": {"data": {}}})
    sidebar.handlers[0](inject_message(HIGGS))
    sidebar.handlers[0](inject_message(HIGGS))  # the sidebar injects again after a kernel (re)attach
    assert calls["define"] == ["higgs"]
    assert calls["call"] == ["dlaas_rucio_inject_1", "dlaas_rucio_inject_2"]
    assert "root://cache//root://origin/escape_demo:higgs-candidates" in calls["declare"][-1]
    (frontend,) = calls["comms"]
    assert frontend.target == FRONTEND_TARGET
    assert frontend.sent == [{"action": "ack-inject", "variable_names": ["higgs"]}] * 2


def test_names_taken_or_invalid_are_not_injected_and_not_acknowledged():
    kernel, calls = attachments(defined_elsewhere={"TFile"})
    kernel.received(
        inject_message(
            {**HIGGS, "variableName": "TFile"}, {**HIGGS, "variableName": "new"}, {**HIGGS, "variableName": "ok"}
        )
    )
    assert calls["call"] == ["dlaas_rucio_inject_3"]
    assert calls["comms"][0].sent == [{"action": "ack-inject", "variable_names": ["ok"]}]


def test_resolve_asks_the_sidebar_over_one_frontend_comm_whose_answer_is_injected():
    kernel, calls = attachments()
    kernel.request()
    kernel.request()
    (frontend,) = calls["comms"]
    assert frontend.sent == [{"action": "request-inject"}] * 2
    frontend.handlers[0](inject_message(HIGGS))  # the sidebar answers on the comm the kernel opened
    assert calls["call"] == ["dlaas_rucio_inject_1"]


def test_no_urls_when_rucio_fails_the_mount_paths_still_arrive():
    kernel, calls = attachments()

    def down(did):
        raise ConnectionError("Rucio is down")

    kernel.site_urls = down
    kernel.received(inject_message(HIGGS))
    assert calls["call"] == ["dlaas_rucio_inject_1"] and "urls.push_back" not in calls["declare"][-1]
