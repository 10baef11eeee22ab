"""`python -m dlaas_sync`: the dlaas-rucio-sync command (dlaas_sync.cli)."""

import sys

from dlaas_sync.cli import main

sys.exit(main())
