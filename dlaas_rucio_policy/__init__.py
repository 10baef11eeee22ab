"""Rucio policy package of DLaaS: the scratch area's replicas are registered by the DLaaS registration service only.

Load it in the Rucio server with `[policy] package = dlaas_rucio_policy` (the directory holding this package on the
server's PYTHONPATH). Every permission it does not decide is answered by the base policy, Rucio's `generic` unless
`[policy] dlaas_base_permission` names another permission module (e.g. the permission module of the VO's own policy
package). See permission.py for the rules and docs/security.md for why.
"""

SUPPORTED_VERSION = [">=41.0.0"]
