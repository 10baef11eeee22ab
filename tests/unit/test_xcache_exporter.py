"""What the XCache exporter (dlaas_xcache.exporter) makes of XRootD 5.5.3's UDP reports: datagrams as the cache
sends them (captured from Debian's xrootd 5.5.3 with the directives of `cache_directives`)."""

import pytest
from prometheus_client import generate_latest

from dlaas_xcache.exporter import CacheMetrics, cache_directives

SUMMARY = (
    '<statistics tod="1796173296" ver="v5.5.3" src="vm:21095" tos="{tos}" pgm="xrootd" ins="cache" pid="{pid}" '
    'site=""><stats id="info"><host>vm</host><port>21095</port><name>cache</name></stats><stats id="link"><num>{num}'
    "</num><maxn>1</maxn><tot>2</tot><in>{inb}</in><out>{out}</out><ctime>0</ctime><tmo>0</tmo><stall>0</stall>"
    '<sfps>0</sfps></stats><stats id="pss"><open>{opens}<errs>{errs}</errs></open><close>1<errs>0</errs></close>'
    '</stats><stats id="cache" type="pfc"><prerd><in>0</in><hits>0</hits><miss>0</miss></prerd><rd><in>0</in>'
    "<out>0</out><hits>0></hits><miss>0</miss></rd><pass>0<cnt>0</cnt></pass></stats></statistics>"
)
GSTREAM = (
    b'{"code":"g","pseq":  2,"stod":1796173288,"sid":4159843856305,"gs":{"type":"C","tbeg":1796173294,'
    b'"tend":1796173294}}\n{"event":"file_close","lfn":"/EULAKE-1/file.bin","size":3000000,"blk_size":1048576,'
    b'"n_blks":3,"n_blks_done":3,"access_cnt":2,"attach_t":1796173294,"detach_t":1796173294,"remotes":%s,'
    b'"b_hit":%d,"b_miss":%d,"b_bypass":0,"n_cks_errs":0}\x00'
)


def summary(pid=100, tos=1, num=1, inb=10, out=1000, opens=1, errs=0) -> bytes:
    return SUMMARY.format(pid=pid, tos=tos, num=num, inb=inb, out=out, opens=opens, errs=errs).encode()


def value(m: CacheMetrics, name: str, **labels) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def test_a_file_read_from_the_origin_then_from_the_cache_counts_one_miss_one_hit():
    m = CacheMetrics()
    assert m.feed(GSTREAM % (b'["127.0.0.1:21094"]', 983040, 2000000)) == "gstream"
    assert m.feed(GSTREAM % (b"[]", 3000000, 0)) == "gstream"
    assert value(m, "dlaas_xcache_accesses_total", served_from="origin") == 1
    assert value(m, "dlaas_xcache_accesses_total", served_from="cache") == 1
    assert value(m, "dlaas_xcache_bytes_total", source="hit") == 3983040
    assert value(m, "dlaas_xcache_bytes_total", source="miss") == 2000000


def test_summaries_are_cumulative_and_only_their_growth_is_counted():
    m = CacheMetrics()
    assert m.feed(summary(out=1000, opens=1)) == "summary"
    m.feed(summary(out=5000, opens=3, errs=1, num=4))
    assert value(m, "dlaas_xcache_client_bytes_total", direction="out") == 5000
    assert value(m, "dlaas_xcache_origin_opens_total") == 3
    assert value(m, "dlaas_xcache_origin_open_errors_total") == 1
    assert value(m, "dlaas_xcache_client_connections") == 4


def test_a_restarted_xrootd_starts_from_zero_and_the_counters_keep_growing():
    m = CacheMetrics()
    m.feed(summary(pid=100, tos=1, out=5000))
    m.feed(summary(pid=200, tos=2, out=700))  # a new allow-list restarted the cache
    assert value(m, "dlaas_xcache_client_bytes_total", direction="out") == 5700


def test_datagrams_from_beyond_loopback_or_not_xrootds_are_dropped():
    m = CacheMetrics()
    assert m.feed(GSTREAM % (b"[]", 10**12, 0), sender="10.0.0.7") == "invalid"
    assert m.feed(b"hello") == "invalid"
    assert m.feed(b"<statistics><unclosed") == "invalid"
    assert value(m, "dlaas_xcache_bytes_total", source="hit") == 0
    assert value(m, "dlaas_xcache_reports_total", kind="invalid") == 3


def test_no_path_host_or_user_reaches_a_label():
    m = CacheMetrics()
    m.feed(GSTREAM % (b'["127.0.0.1:21094"]', 1, 1))
    m.feed(summary())
    text = generate_latest(m.registry).decode()
    assert "EULAKE-1" not in text and "21094" not in text and "vm:21095" not in text


@pytest.mark.parametrize("every", [5, 10])
def test_the_directives_send_both_streams_to_one_port(every):
    report, gstream = cache_directives("127.0.0.1:9931", every)
    assert report == f"xrd.report 127.0.0.1:9931 every {every}s all"
    assert gstream == f"xrootd.mongstream pfc use flush {every}s send json 127.0.0.1:9931"
