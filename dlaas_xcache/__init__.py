"""XCache companions: the allowed-origins sync from CRIC."""
