"""One module per `zoll` subcommand; each exposes `register(subparsers)`.

`registry.cli.main` discovers the modules here, so adding a command is adding a file.
"""
