"""The DLaaS registration service: registers users' scratch files in Rucio on their behalf (see app.py)."""
