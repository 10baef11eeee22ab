"""dlaas_sync.scim's reading of IAM's paged SCIM lists: every page to the end, and an answer that does not add up
refused as a whole (a partial member list would look like people leaving). IAM's answers are served from lists
here, page by page as IAM pages them; the integration tests read the real dev IAM."""

from __future__ import annotations

import pytest

from dlaas_sync.scim import ScimClient, ScimError, user_from_resource

LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def resource(name, groups=("escape/users",), active=True):
    return {
        "id": f"id-{name}",
        "userName": name,
        "active": active,
        "emails": [{"type": "work", "value": f"{name}@example.org", "primary": True}],
        "groups": [{"display": g, "value": f"gid-{g}"} for g in groups],
    }


class Paged(ScimClient):
    """A ScimClient whose IAM answers come from `lists` (path -> resources), paged as IAM pages them; `tamper`
    may change a page before it is answered."""

    def __init__(self, lists, page_size=2, tamper=None, cap=100):
        super().__init__("https://iam.example.org/", "sync", "secret", page_size=page_size)
        self.lists = lists
        self.cap = cap
        self.tamper = tamper or (lambda path, page: page)
        self.requests = []

    def get(self, path, params=None):
        self.requests.append((path, dict(params or {})))
        if path not in self.lists:
            return None
        items = self.lists[path]
        start, count = params.get("startIndex", 1), min(params.get("count", self.cap), self.cap)
        chunk = items[start - 1 : start - 1 + count]
        page = {
            "totalResults": len(items),
            "itemsPerPage": len(chunk),
            "startIndex": start,
            "schemas": [LIST],
            "Resources": chunk,
        }
        return self.tamper(path, page)


def iam(n_users=5, members=None):
    users = [resource(f"u{i}") for i in range(n_users)]
    members = [f"id-u{i}" for i in range(n_users)] if members is None else members
    return {
        "Groups": [{"id": "g1", "displayName": "escape/users"}, {"id": "g0", "displayName": "escape"}],
        "Groups/g1/members": [{"value": m, "display": m} for m in members],
        "Users": users,
    }


def test_every_page_is_read_and_nothing_twice():
    client = Paged(iam(5), page_size=2)
    assert [u.username for u in client.members(["escape/users"])] == ["u0", "u1", "u2", "u3", "u4"]
    starts = [p["startIndex"] for path, p in client.requests if path == "Users"]
    assert starts == [1, 3, 5]


def test_an_iam_that_answers_smaller_pages_than_asked_is_still_read_to_the_end():
    client = Paged(iam(5), page_size=100, cap=2)
    assert len(client.members(["escape/users"])) == 5
    assert [p["startIndex"] for path, p in client.requests if path == "Users"] == [1, 3, 5]


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda path, page: {**page, "Resources": []} if page["startIndex"] == 3 else page, "incomplete: 2 of 5"),
        (lambda path, page: {**page, "totalResults": 6} if page["startIndex"] == 3 else page, "changed while"),
        (
            lambda path, page: (
                {**page, "Resources": page["Resources"] + page["Resources"][:1]}
                if page["startIndex"] == 1 and path == "Users"
                else page
            ),
            "twice",
        ),
        (lambda path, page: {"detail": "nope"}, "not a SCIM list"),
    ],
    ids=["page-missing", "total-changes", "a-user-twice-across-pages", "not-a-list"],
)
def test_an_answer_that_does_not_add_up_is_refused(tamper, message):
    with pytest.raises(ScimError, match=message):
        Paged(iam(5), page_size=2, tamper=tamper).members(["escape/users"])


def test_an_id_listed_twice_is_refused():
    data = iam(3)
    data["Users"].append(resource("u0"))
    with pytest.raises(ScimError, match="twice"):
        Paged(data).users()


def test_a_member_who_is_no_user_is_refused():
    with pytest.raises(ScimError, match="id-ghost as a member of escape/users but not among its users"):
        Paged(iam(2, members=["id-u0", "id-ghost"])).members(["escape/users"])


def test_a_group_iam_does_not_have_is_refused():
    with pytest.raises(ScimError, match="IAM has no group escape/usrs"):
        Paged(iam(2)).members(["escape/usrs"])


def test_an_empty_group_is_an_empty_list_without_reading_users():
    client = Paged(iam(2, members=[]))
    assert client.members(["escape/users"]) == []
    assert "Users" not in [path for path, _ in client.requests]


def test_a_user_resource_becomes_an_iam_user():
    u = user_from_resource(
        {
            **resource("alice", groups=("escape/users", "escape/admins")),
            "emails": [{"value": "other@example.org"}, {"value": "alice@example.org", "primary": True}],
        }
    )
    assert (u.sub, u.username, u.email, u.active) == ("id-alice", "alice", "alice@example.org", True)
    assert u.groups == {"escape/users", "escape/admins"}
    assert user_from_resource({**resource("bob"), "active": False}).active is False
    with pytest.raises(ScimError, match="without a userName"):
        user_from_resource({"id": "x"})
