"""The `devyard` command (and `python -m devyard`): the CLI, with ssh's own two calls kept light.

OpenSSH runs `devyard ssh --prepare ALIAS` and `devyard ssh --stdio ALIAS` at every connection;
importing the whole CLI (typer, rich, the settings, the store) would add about a second to each, so
those go straight to devyard.ssh.proxy.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the `devyard` script."""
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "ssh" and args[1] in ("--stdio", "--prepare"):
        from devyard.ssh import proxy

        sys.exit(proxy.main(args[1], args[2:]))
    from devyard.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
