"""`python -m devyard` runs the CLI."""

from devyard.cli import main

main()
