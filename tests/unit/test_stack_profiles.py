"""The stack builder's choices, before any service starts: which parts a profile brings, in which order, and the
refusals that must come before anything runs (a busy port, a hub that could not find its IAM)."""

import socket

import pytest

from devstack.service import ServiceError
from devstack.settings import Settings
from devstack.stack import PARTS, PROFILES, Stack


@pytest.fixture
def stack(tmp_path):
    return Stack(Settings.free_ports(tmp_path / "state"))


@pytest.mark.parametrize(
    "names, parts",
    [
        (["core"], ["iam", "postgres", "rucio"]),
        (["daemons"], ["iam", "postgres", "rucio", "daemons"]),
        (["cache"], ["iam", "postgres", "rucio", "cache"]),
        (["hub"], ["iam", "postgres", "rucio", "registrar", "dask_gateway", "jupyterhub"]),
        (["login"], ["iam", "jupyterhub"]),
        (["core", "login"], ["iam", "postgres", "rucio", "jupyterhub"]),
        (["iam"], ["iam"]),
        (["all"], list(PARTS)),
    ],
)
def test_a_profile_brings_what_its_parts_need_in_start_order(stack, names, parts):
    assert stack.parts(names) == parts


def test_a_growing_stack_starts_only_what_is_not_running_yet(stack):
    stack.started += [("iam", None), ("postgres", None), ("rucio", None)]  # as after start("core")
    assert stack.parts(["hub"]) == ["registrar", "dask_gateway", "jupyterhub"]
    assert stack.parts(["core"]) == []


def test_without_leaves_a_part_out_although_another_needs_it(stack):
    assert stack.parts(["login"], without=["iam"]) == ["jupyterhub"]


def test_an_unknown_profile_is_refused_with_the_known_ones(stack):
    with pytest.raises(ValueError, match=r"unknown profile or part 'hubb': use one of core, daemons, cache, hub"):
        stack.parts(["hubb"])


def test_every_profile_names_known_parts():
    assert all(part in PARTS for parts in PROFILES.values() for part in parts)


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        stack = Stack(Settings.free_ports(tmp_path / "state", hub_port=busy.getsockname()[1]))
        with pytest.raises(ServiceError, match=r"for JupyterHub is already in use: .* or set DLAAS_HUB_PORT"):
            stack.start("login")  # the IAM (port 0) would start first: it must not have
    assert stack.started == [] and not stack.iam.alive()


def test_a_hub_without_its_iam_needs_the_iams_port_in_advance(stack):
    with pytest.raises(ServiceError, match=r"must know the IAM's port: fix Settings.iam_port"):
        stack.start("login", without=["iam"])
    assert stack.started == []


def test_the_registration_service_cannot_join_a_hub_that_runs_without_it(stack):
    stack.started += [("iam", None), ("jupyterhub", None)]  # as after start("login")
    with pytest.raises(ServiceError, match=r"the hub already runs without the registration service"):
        stack.start("hub")
