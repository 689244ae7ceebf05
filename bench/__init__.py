"""devyard's benchmarks (make bench): each prints a table and writes bench/results/<name>.json."""

import os

# They reach workspaces by path (/w/OWNER/NAME/) from a process that does not resolve *.localhost, as every
# earlier run did, so figures stay comparable: path mode, unless a run says otherwise.
os.environ.setdefault("DEVYARD_WORKSPACE_DOMAIN", "none")
