"""Small filesystem helpers shared by the user server, the XCache image and the local data lake.

A package of its own so that nothing needing an atomic file write depends on the user-server package
(singleuser) or its dependencies: `dlaas_fs.atomic` writes files atomically with their final mode from the start,
`dlaas_fs.secret_files` keeps a generated secret in a private file.
"""
