"""devstack.ports.free_port: ports that no outgoing connection can take before the service binds them."""

from __future__ import annotations

import socket

from devstack.ports import ephemeral_range, free_port


def test_a_free_port_lies_outside_the_range_of_outgoing_connections_and_can_be_bound():
    low, high = ephemeral_range()
    ports = {free_port() for _ in range(50)}
    assert not any(low <= port <= high for port in ports), sorted(ports)
    assert len(ports) > 40  # chosen at random: parallel test processes rarely pick the same
    for port in list(ports)[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
