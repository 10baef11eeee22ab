"""dlaas-xcache-origin-sync's pure parts: which CRIC entries become allowed origins, the file it writes, and when
it touches the cache's ConfigMap and Deployment."""

from types import SimpleNamespace

import pytest

from dlaas_xcache.origin_sync import DIGEST_ANNOTATION, AllowList, SyncError, origin_hosts, update_kubernetes, write_file


def doma(**rses):
    return {"rses": {name: {"name": name, "protocols": protocols} for name, protocols in rses.items()}}


def test_xrootd_hosts_of_every_rse_are_allowed_once_sorted_and_lower_case():
    catalogue = doma(
        CERN_EOS=[{"scheme": "root", "hostname": "EOS.example.org", "port": 1094},
                  {"scheme": "davs", "hostname": "web.example.org", "port": 443}],
        DESY=[{"scheme": "root", "hostname": "root://dcache.example.de:1094/pnfs", "port": 1094}],
        PIC=[{"scheme": "xroot", "hostname": "xrootd.example.es"}, {"scheme": "root", "hostname": "eos.example.org"}],
        TAPE=[],
    )
    hosts, warnings = origin_hosts(catalogue)
    assert hosts == ["dcache.example.de", "eos.example.org", "xrootd.example.es"]
    assert warnings == []


def test_the_plain_form_and_protocols_keyed_by_name_are_read_too():
    plain = {"A": {"protocols": {"root-a": {"scheme": "root", "hostname": "a.example.org:1095"}}}}
    assert origin_hosts(plain)[0] == ["a.example.org"]
    assert origin_hosts(doma(V6=[{"scheme": "root", "hostname": "[2001:db8::1]:1094"}]))[0] == ["2001:db8::1"]


def test_an_entry_that_could_smuggle_a_directive_into_the_cache_config_is_skipped_with_a_warning():
    hosts, warnings = origin_hosts(doma(
        GOOD=[{"scheme": "root", "hostname": "eos.example.org"}],
        EVIL=[{"scheme": "root", "hostname": "x.example.org\npss.permit *"}],
        SPACE=[{"scheme": "root", "hostname": "a b"}],
    ))
    assert hosts == ["eos.example.org"]
    assert len(warnings) == 2 and all("is not a host name" in w for w in warnings)


@pytest.mark.parametrize("answer, reason", [
    ([1, 2], "not a JSON object"),
    ({"rses": {}}, "lists no RSEs"),
    ({}, "lists no RSEs"),
    (doma(WEB=[{"scheme": "https", "hostname": "web.example.org"}]), "no root/xroot endpoint"),
    (doma(EVIL=[{"scheme": "root", "hostname": "*"}]), "no root/xroot endpoint"),
])
def test_an_answer_without_any_usable_origin_is_an_error_never_an_empty_list(answer, reason):
    with pytest.raises(SyncError, match=reason):
        origin_hosts(answer)


def test_the_list_is_pss_permit_lines_with_whole_line_comments_and_no_timestamp():
    text = AllowList(("a.example.org", "b.example.org"), "https://cric.example/api").render()
    lines = text.splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == ["pss.permit a.example.org", "pss.permit b.example.org"]
    assert text == AllowList(("a.example.org", "b.example.org"), "https://cric.example/api").render()


def test_the_file_is_replaced_atomically_only_when_its_content_changes(tmp_path):
    target = tmp_path / "origins" / "origins.cfg"
    assert write_file(target, "pss.permit a\n") is True
    inode = target.stat().st_ino
    assert write_file(target, "pss.permit a\n") is False
    assert target.stat().st_ino == inode  # untouched
    assert write_file(target, "pss.permit b\n") is True
    assert target.read_text() == "pss.permit b\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in target.parent.iterdir()] == ["origins.cfg"]  # no temporary file left behind


class FakeKubernetes:
    """Records the calls of the two kubernetes API objects the sync uses (pure-logic unit test)."""

    def __init__(self, data, annotations):
        self.data, self.annotations, self.patches = data, annotations, []
        self.core, self.apps = SimpleNamespace(), SimpleNamespace()
        self.core.read_namespaced_config_map = lambda name, ns: SimpleNamespace(data=self.data)
        self.core.patch_namespaced_config_map = lambda name, ns, body: self.patches.append(("configmap", body))
        self.apps.read_namespaced_deployment = lambda name, ns: SimpleNamespace(
            spec=SimpleNamespace(template=SimpleNamespace(metadata=SimpleNamespace(annotations=self.annotations))))
        self.apps.patch_namespaced_deployment = lambda name, ns, body: self.patches.append(("deployment", body))


def test_kubernetes_mode_patches_the_configmap_and_rolls_the_cache_only_when_the_list_changed():
    allow = AllowList(("eos.example.org",), "cric")
    k8s = FakeKubernetes({"origins.cfg": "pss.permit old.example.org\n"}, None)
    assert update_kubernetes(allow, "dlaas", "dlaas-xcache-origins", "dlaas-xcache", api=(k8s.core, k8s.apps))
    assert k8s.patches == [
        ("configmap", {"data": {"origins.cfg": allow.render()}}),
        ("deployment", {"spec": {"template": {"metadata": {"annotations": {DIGEST_ANNOTATION: allow.digest}}}}}),
    ]
    settled = FakeKubernetes({"origins.cfg": allow.render()}, {DIGEST_ANNOTATION: allow.digest})
    assert not update_kubernetes(allow, "dlaas", "dlaas-xcache-origins", "dlaas-xcache",
                                 api=(settled.core, settled.apps))
    assert settled.patches == []


def test_the_authdb_lets_the_cache_read_exactly_the_permitted_origins_under_every_xrootd_scheme():
    from dlaas_xcache.origin_sync import authdb, permitted_hosts

    hosts = permitted_hosts(AllowList(("eos.example.org", "127.0.0.1"), "cric").render())
    assert hosts == ["eos.example.org", "127.0.0.1"]
    record = authdb(hosts).split("\n", 1)[1].replace(" \\\n  ", " ").split()
    assert record[:2] == ["u", "*"]  # one record for everyone: XrdAcc takes one per id
    rules = dict(zip(record[2::2], record[3::2]))
    assert rules["/root:/eos.example.org:"] == "lr" and rules["/root:/eos.example.org/"] == "lr"
    assert "/xroots:/127.0.0.1:" in rules and len(rules) == 2 * 4 * 2  # hosts x schemes x (with port, without)
    assert set(rules.values()) == {"lr"}  # look up and read, never write
    # a prefix ending in ':' or '/' cannot let eos.example.org.evil.net through
    assert all(p.endswith((":", "/")) for p in rules)


def test_the_authdb_never_contains_something_that_is_not_a_host(tmp_path):
    from dlaas_xcache.origin_sync import authdb_main

    origins = tmp_path / "origins.cfg"
    origins.write_text("pss.permit eos.example.org\npss.permit *.example.org\npss.permit evil /\n"
                       "pss.permit origin.example.net:1094\n")
    assert authdb_main(["--origins", str(origins), "--output", str(tmp_path / "authdb")]) == 0
    text = (tmp_path / "authdb").read_text()
    assert "eos.example.org" in text and "*" not in text.split("\n", 1)[1].replace("u *", "") and "evil" not in text
    assert "/root:/origin.example.net: lr" in text  # the port of an initial entry is dropped, as pss.permit does
