"""dlaas-rucio-sync: ESCAPE IAM group members become Rucio users, and leavers lose access, without a ticket.

A researcher who joins the configured IAM groups gets a Rucio account named after her IAM userName, her IAM identity
on it (`SUB=<sub>, ISS=<issuer>`, what Rucio matches tokens against), the scope user.<account>, her e-mail and
quotas on the configured RSEs. Someone who leaves loses the identity and the account is suspended; nothing of hers
is deleted, and she gets it back when she returns. Modules, one job each:

- scim: reads IAM's SCIM API (users, groups, members; every page) with a client-credentials token;
- desired: IAM members -> the accounts they should have (the naming rules; collisions between IAM users);
- plan: the changes that take Rucio from what it has to that, with the safety checks (pure);
- rucio_side: reads what Rucio has and applies the changes in an order that keeps every account consistent;
- sync: one run (all members, or one user for the hub's first login) and its report;
- cli: the `dlaas-rucio-sync` command.
"""

import re

#: An IAM user id as one line of the onboarding protocol (`dlaas-rucio-sync --serve`, hub_plugins.onboarding), checked
#: on both sides: IAM's ids are UUIDs; no space, newline or other control character.
SUB = re.compile(r"[A-Za-z0-9._@:-]{1,255}")
