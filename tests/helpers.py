"""What the integration tests share besides their fixtures: the test session's own IAM clients and hub service.

Driving the hub (scripted logins, starting a user's server, reading its environment or auth_state) is
devstack.hub_client, which the benchmarks use too; waiting for a condition is devstack.ports.wait_for.
"""

from __future__ import annotations

import copy

from devstack.hub_client import admin_service

TEST_REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the scripted login stops before it
TEST_SCIM_ADMIN = "dlaas-test-scim-admin"  # changes users and group members through SCIM, as IAM administrators do

# A test-only hub service that starts and stops servers (and reads their pid from the server state) and makes tokens
# for tests. It cannot read auth_state: tests read that from the hub's database (devstack.hub_client.auth_state).
# Users and IAM operators have the production roles (hub_plugins.hub_roles).
_TEST_ADMIN, TEST_ADMIN_TOKEN = admin_service(
    "test-admin", ["admin:servers", "admin:server_state", "list:users", "read:users", "tokens"]
)


def hub_test_extra() -> dict:
    """The test hub service as LocalHub's `extra` configuration (a copy: callers add their own keys to it)."""
    return copy.deepcopy(_TEST_ADMIN)
