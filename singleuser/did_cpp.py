"""C++ for "Add to Notebook" in the ROOT C++ kernel: the `rucio::DID` type and the code that fills one variable.

The Rucio sidebar sends a notebook's attached DIDs to its kernel (rucio-jupyterlab's comm protocol, see
singleuser.root_kernel); a Python kernel receives Python objects (rucio_jupyterlab.kernels.ipython). In C++ each
attached DID becomes a global `rucio::DID`: a `std::vector<std::string>` of its files' paths on the storage mount,
plus its name, its files' PFNs, the root:// URLs Rucio gives this site for them (through the site's XCache) and
whether every file is available on the mount - so it goes straight into ROOT:

    auto f = TFile::Open(higgs[0].c_str());
    ROOT::RDataFrame df("events", higgs);                              // through the storage mount
    TChain chain("events");                                            // through the cache: ROOT 6.40 opens the
    for (auto &url : higgs.urls) chain.AddFile(url.c_str());           // cache's nested root:// URLs in a TChain,
    ROOT::RDataFrame cached(chain);                                    // not given to RDataFrame directly

Pure string building: no ROOT here, so the rules (valid C++ names, escaped strings) are unit-tested on their own.
"""

from __future__ import annotations

import re

DECLARATION = """#ifndef DLAAS_RUCIO_DID
#define DLAAS_RUCIO_DID
#include <string>
#include <vector>
namespace rucio {
/// A Data Identifier attached with the Rucio sidebar's "Add to Notebook": its files' paths on the storage mount,
/// what TFile::Open(did[0].c_str()) and ROOT::RDataFrame("tree", did) read.
struct DID : std::vector<std::string> {
   std::string name;               ///< scope:name
   std::vector<std::string> pfns;  ///< the files' PFNs, as Rucio lists them
   std::vector<std::string> urls;  ///< root:// URLs Rucio gives this site (through its XCache, if it has one)
   bool available = false;         ///< whether every file is on the mounted storage
};
}
#endif
"""

CPP_KEYWORDS = frozenset(
    re.findall(
        r"\S+",
        """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
        compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
        default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
        int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
        reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template
        this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t
        while xor xor_eq""",
    )
)


class AttachmentError(ValueError):
    """An attachment that cannot become a C++ variable; the message says why."""


def variable_name(name: object) -> str:
    """The attachment's variable name, if it can be a C++ global: an identifier, no keyword, no reserved name."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise AttachmentError(f"{name!r} is not a C++ variable name: use letters, digits and _")
    if name in CPP_KEYWORDS or "__" in name or re.fullmatch(r"_[A-Z].*", name):
        raise AttachmentError(f"{name!r} is reserved in C++: choose another variable name")
    return name


def string_literal(text: str) -> str:
    """`text` as a C++ string literal (UTF-8; quotes, backslashes and anything not printable ASCII escaped)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def fill_function(function: str, attachment: dict, urls: list[str] = ()) -> tuple[str, str]:
    """(variable, C++ definition of `void function()`) setting the variable from one entry of an `inject` message,
    {"variableName", "did", "type", "files": [{"path", "pfn"}] or None, "didAvailable"}, and the site's `urls`."""
    name = variable_name(attachment.get("variableName"))
    files = attachment.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise AttachmentError(f"{name}: the sidebar sent no list of files")
    available = bool(attachment.get("didAvailable", True)) and bool(attachment.get("files"))
    lines = [
        f"void {function}() {{",
        f"   {name}.clear();",
        f"   {name}.pfns.clear();",
        f"   {name}.urls.clear();",
        f"   {name}.name = {string_literal(str(attachment.get('did') or ''))};",
        f"   {name}.available = {'true' if available else 'false'};",
    ]
    for f in files:
        if f.get("path"):
            lines.append(f"   {name}.push_back({string_literal(str(f['path']))});")
        if f.get("pfn"):
            lines.append(f"   {name}.pfns.push_back({string_literal(str(f['pfn']))});")
    lines += [f"   {name}.urls.push_back({string_literal(str(url))});" for url in urls]
    lines.append("}")
    return name, "\n".join(lines) + "\n"
