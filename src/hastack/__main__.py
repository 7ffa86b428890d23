"""`python -m hastack` is the `hastack` command."""

from hastack.cli import main

main()
