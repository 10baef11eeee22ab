"""XCache companions: the allow-list format (allow_list), its path rules (authdb), the sync from CRIC (origin_sync:
the command, reading CRIC in cric, writing the list to a file or a ConfigMap in targets) and the wrapper that runs
xrootd on the list and restarts it when the list changes (serve)."""
