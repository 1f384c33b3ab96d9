"""The `zoll` command line."""
