"""The XCache's allow-list format and the path rules derived from it (pure): exactly `<scheme>:/<host>:<port>/` of
each listed origin, `<host>/` only on port 1094, and a list that is anything but origins is refused."""

import re

import pytest

from dlaas_xcache import allow_list
from dlaas_xcache.allow_list import AllowListError, Origin
from dlaas_xcache.authdb import authdb, main, rules


@pytest.mark.parametrize(
    "origin, expected",
    [
        (Origin("127.0.0.1", 40000), ["/root:/127.0.0.1:40000/", "/xroot:/127.0.0.1:40000/"]),
        (
            Origin("eos.example.org"),
            [
                "/root:/eos.example.org:1094/",
                "/root:/eos.example.org/",
                "/xroot:/eos.example.org:1094/",
                "/xroot:/eos.example.org/",
            ],
        ),
        (Origin("2001:db8::1", 1095), ["/root:/[2001:db8::1]:1095/", "/xroot:/[2001:db8::1]:1095/"]),
        (
            Origin("2001:db8::1", 1094),
            [
                "/root:/[2001:db8::1]:1094/",
                "/root:/[2001:db8::1]/",
                "/xroot:/[2001:db8::1]:1094/",
                "/xroot:/[2001:db8::1]/",
            ],
        ),
    ],
)
def test_each_origin_gets_rules_ending_right_after_its_port_and_the_portless_form_only_on_1094(origin, expected):
    assert rules([origin]) == expected


def test_the_rules_of_two_origins_on_one_host_do_not_open_a_third_port():
    prefixes = rules([Origin("a.example.org", 1095), Origin("a.example.org", 1096)])
    assert prefixes == [
        "/root:/a.example.org:1095/",
        "/xroot:/a.example.org:1095/",
        "/root:/a.example.org:1096/",
        "/xroot:/a.example.org:1096/",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/root:/127.0.0.1:40000@127.0.0.2:40000/p",
        "/root:/127.0.0.1:400001/p",
        "/root:/127.0.0.1:40000:1/p",
        "/root:/127.0.0.1.:40000/p",
        "/root:/127.0.0.1/p",
        "/root:/localhost.:40000/p",
        "/root:/LOCALHOST:40000/p",
        "/ROOT:/127.0.0.1:40000/p",
        "/root:/127.0.0.1:40000#@x/p",
        "/root:/127.0.0.1:40000?/p",
        "/root:/127.0.0.1:40000\\/p",
        "/root:/127.0.0.1:40000%2f/p",
        "/roots:/127.0.0.1:40000/p",
        "/root:/[::ffff:127.0.0.1]:40000/p",
        "/root:/127.0.0.1:40000",
    ],
)
def test_no_rule_is_a_prefix_of_another_spelling_of_a_permitted_origin(path):
    assert not [r for r in rules([Origin("127.0.0.1", 40000), Origin("localhost", 40000)]) if path.startswith(r)]


def test_the_authdb_is_one_record_for_everyone_granting_lookup_and_read_only():
    text = authdb([Origin("eos.example.org"), Origin("127.0.0.1", 40000)])
    comment, record = text.split("\n", 1)
    assert comment.startswith("# ")
    words = record.replace(" \\\n  ", " ").split()
    assert words[:2] == ["u", "*"]  # XrdAcc takes one record per id
    assert words[2::2] == rules([Origin("127.0.0.1", 40000), Origin("eos.example.org")])
    assert set(words[3::2]) == {"lr"}  # look up and read, never write


@pytest.mark.parametrize(
    "origin",
    [
        Origin("EOS.example.org"),
        Origin("*.example.org"),
        Origin("a b"),
        Origin("eos.example.org."),
        Origin("::FFFF:127.0.0.1"),
    ],
)
def test_a_rule_is_never_written_for_something_that_is_not_a_canonical_host(origin):
    with pytest.raises(ValueError):
        rules([origin])


def test_the_list_gives_its_origins_sorted_once_with_1094_for_no_port():
    text = (
        "# comment\n\n   # indented comment\npss.permit eos.example.org\npss.permit EOS.example.org:1094\n"
        "pss.permit  127.0.0.1:40000\npss.permit [2001:db8::1]:1095\npss.permit 2001:db8::2\n"
    )
    assert allow_list.parse(text) == [
        Origin("127.0.0.1", 40000),
        Origin("2001:db8::1", 1095),
        Origin("2001:db8::2", 1094),
        Origin("eos.example.org", 1094),
    ]


def test_what_origin_sync_writes_reads_back_as_the_same_origins():
    origins = [Origin("127.0.0.1", 40000), Origin("2001:db8::1", 1095), Origin("eos.example.org")]
    assert allow_list.parse(allow_list.render(origins, "cric")) == origins


@pytest.mark.parametrize(
    "text, reason",
    [
        ("pss.permit eos.example.org\nofs.authorize 0\n", "line 2 is not `pss.permit"),
        ("pss.permit eos.example.org\npss.origin evil.example.org:1094\n", "line 2 is not"),
        ("pss.permit eos.example.org\nacc.authdb /tmp/open.authdb\n", "line 2 is not"),
        ("pss.permit eos.example.org\ncontinue /etc/other/\n", "line 2 is not"),
        ("pss.permit / eos.example.org\n", "line 1 is not"),
        ("pss.permit eos.example.org # the big one\n", "line 1 is not"),
        ("pss.permit *.example.org\n", "not a host name"),
        ("pss.permit user@eos.example.org\n", "not a host name"),
        ("pss.permit eos.example.org.\n", "not a host name"),
        ("pss.permit eos.example.org:01094\n", "not a port"),
        ("pss.permit eos.example.org:0\n", "not a port"),
        ("pss.permit eos.example.org:65536\n", "not a port"),
        ("pss.permit eos.example.org:1094:1095\n", "not a host name"),
        ("pss.permit [127.0.0.1]:1094\n", "not an IPv6 address"),
        ("pss.permit [fe80::1%eth0]:1094\n", "not a host name"),
        ("pss.permit eos.example.org:\n", "not a port"),
        ("# nothing\n", "lists no `pss.permit` origin"),
        ("", "lists no `pss.permit` origin"),
    ],
)
def test_a_list_with_anything_but_origins_is_refused_with_the_line_that_is_wrong(text, reason):
    with pytest.raises(AllowListError, match=re.escape(reason)) as e:
        allow_list.parse(text)
    assert "\n" not in str(e.value)


def test_dlaas_xcache_authdb_writes_the_rules_of_a_good_list_and_refuses_a_bad_one(tmp_path, capsys):
    origins, output = tmp_path / "origins.cfg", tmp_path / "run" / "origins.authdb"
    origins.write_text("pss.permit eos.example.org\npss.permit origin.example.net:1095\n")
    assert main(["--origins", str(origins), "--output", str(output)]) == 0
    assert output.read_text() == authdb([Origin("eos.example.org"), Origin("origin.example.net", 1095)])
    assert oct(output.stat().st_mode & 0o777) == "0o644"

    origins.write_text("pss.permit eos.example.org\npss.permit *.example.org\n")
    output.unlink()
    assert main(["--origins", str(origins), "--output", str(output)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "line 2" in line and "not a host name" in line
    assert not output.exists()
