"""dlaas-xcache-origin-sync's pure parts: which CRIC entries become allowed origins (host and port), the file it
writes, and that in Kubernetes it touches the cache's ConfigMap and nothing else."""

from types import SimpleNamespace

import pytest

from dlaas_xcache.allow_list import Origin
from dlaas_xcache.cric import AllowList, SyncError, origins_of
from dlaas_xcache.origin_sync import main
from dlaas_xcache.targets import update_kubernetes, write_file


def doma(**rses):
    return {"rses": {name: {"name": name, "protocols": protocols} for name, protocols in rses.items()}}


def test_xrootd_endpoints_of_every_rse_are_allowed_once_sorted_lower_case_with_their_port():
    catalogue = doma(
        CERN_EOS=[
            {"scheme": "root", "hostname": "EOS.example.org", "port": 1094},
            {"scheme": "davs", "hostname": "web.example.org", "port": 443},
        ],
        DESY=[{"scheme": "root", "hostname": "root://dcache.example.de:1095/pnfs", "port": 1094}],
        PIC=[{"scheme": "xroot", "hostname": "xrootd.example.es"}, {"scheme": "root", "hostname": "eos.example.org"}],
        TAPE=[],
    )
    origins, warnings = origins_of(catalogue)
    assert origins == [
        Origin("dcache.example.de", 1095),
        Origin("eos.example.org", 1094),
        Origin("xrootd.example.es", 1094),
    ]  # the port in `hostname` wins; no port at all is 1094
    assert warnings == []


def test_one_host_on_two_ports_is_two_origins():
    origins, _ = origins_of(
        doma(
            A=[{"scheme": "root", "hostname": "a.example.org", "port": 1094}],
            B=[{"scheme": "root", "hostname": "a.example.org", "port": "1095"}],
        )
    )
    assert origins == [Origin("a.example.org", 1094), Origin("a.example.org", 1095)]


def test_the_plain_form_and_protocols_keyed_by_name_are_read_too():
    plain = {"A": {"protocols": {"root-a": {"scheme": "root", "hostname": "a.example.org:1095"}}}}
    assert origins_of(plain)[0] == [Origin("a.example.org", 1095)]
    assert origins_of(doma(V6=[{"scheme": "root", "hostname": "[2001:DB8::1]:1094"}]))[0] == [
        Origin("2001:db8::1", 1094)
    ]


@pytest.mark.parametrize(
    "hostname, port",
    [
        ("x.example.org\npss.permit *", 1094),
        ("a b", 1094),
        ("*", 1094),
        ("eos.example.org.", 1094),
        ("user@eos.example.org", 1094),
        ("eos.example.org", 0),
        ("eos.example.org", 70000),
        ("eos.example.org", "1094\npss.permit *"),
        ("eos.example.org:01094", None),
        ("fe80::1%eth0", 1094),
    ],
)
def test_an_entry_that_could_smuggle_a_directive_or_a_wider_rule_into_the_cache_is_skipped_with_a_warning(
    hostname, port
):
    origins, warnings = origins_of(
        doma(
            GOOD=[{"scheme": "root", "hostname": "eos.example.org", "port": 1094}],
            EVIL=[{"scheme": "root", "hostname": hostname, "port": port}],
        )
    )
    assert origins == [Origin("eos.example.org", 1094)]
    [warning] = warnings
    assert warning.startswith("skipped RSE EVIL:") and "\n" not in warning  # one line, the entry shown escaped


@pytest.mark.parametrize(
    "answer, reason",
    [
        ([1, 2], "not a JSON object"),
        ({"rses": {}}, "lists no RSEs"),
        ({}, "lists no RSEs"),
        (doma(WEB=[{"scheme": "https", "hostname": "web.example.org"}]), "no root/xroot endpoint"),
        (doma(EVIL=[{"scheme": "root", "hostname": "*"}]), "no root/xroot endpoint"),
    ],
)
def test_an_answer_without_any_usable_origin_is_an_error_never_an_empty_list(answer, reason):
    with pytest.raises(SyncError, match=reason):
        origins_of(answer)


def test_the_list_is_pss_permit_lines_with_explicit_ports_whole_line_comments_and_no_timestamp():
    allow = AllowList((Origin("b.example.org", 1095), Origin("a.example.org"), Origin("::1", 1094)), "cric")
    lines = allow.render().splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == [
        "pss.permit [::1]:1094",
        "pss.permit a.example.org:1094",
        "pss.permit b.example.org:1095",
    ]
    assert allow.render() == AllowList(tuple(reversed(allow.origins)), "cric").render()


def test_the_file_is_replaced_atomically_only_when_its_content_changes(tmp_path):
    target = tmp_path / "origins" / "origins.cfg"
    assert write_file(target, "pss.permit a\n") is True
    inode = target.stat().st_ino
    assert write_file(target, "pss.permit a\n") is False
    assert target.stat().st_ino == inode  # untouched
    assert write_file(target, "pss.permit b\n") is True
    assert target.read_text() == "pss.permit b\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in target.parent.iterdir()] == ["origins.cfg"]  # no temporary file left behind


class FakeConfigMaps:
    """Records the calls of the CoreV1Api methods the sync uses (pure-logic unit test); it has nothing else, so
    any other call (a Deployment, a pod) fails the test."""

    def __init__(self, data):
        self.data, self.patches = data, []

    def read_namespaced_config_map(self, name, namespace):
        return SimpleNamespace(data=self.data)

    def patch_namespaced_config_map(self, name, namespace, body):
        self.patches.append((namespace, name, body))


def test_kubernetes_mode_patches_only_the_configmap_and_only_when_the_list_changed():
    allow = AllowList((Origin("eos.example.org"),), "cric")
    api = FakeConfigMaps({"origins.cfg": "pss.permit old.example.org\n"})
    assert update_kubernetes(allow, "dlaas", "dlaas-xcache-origins", api=api)
    assert api.patches == [("dlaas", "dlaas-xcache-origins", {"data": {"origins.cfg": allow.render()}})]
    settled = FakeConfigMaps({"origins.cfg": allow.render()})
    assert not update_kubernetes(allow, "dlaas", "dlaas-xcache-origins", api=settled)
    assert settled.patches == []


def test_the_deployment_restart_option_is_refused_with_what_to_do_instead(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--cric-url",
                "http://127.0.0.1:9/x",
                "--namespace",
                "dlaas",
                "--configmap",
                "dlaas-xcache-origins",
                "--restart-deployment",
                "dlaas-xcache",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--restart-deployment is gone" in err and "dlaas-xcache-serve" in err
