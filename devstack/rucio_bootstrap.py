"""Build the Rucio schema and the root account once (runs inside .venvs/rucio, RUCIO_CONFIG set).

A database that already has the schema is left alone, so a second `make up` reuses all state.
"""

import sys

from rucio.db.sqla.session import get_engine
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
from sqlalchemy import inspect


def main() -> int:
    engine = get_engine()
    if inspect(engine).has_table("accounts"):
        return 0
    build_database()
    create_base_vo()
    create_root_account()
    return 0


if __name__ == "__main__":
    sys.exit(main())
