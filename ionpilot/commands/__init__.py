"""Subcommands of the `ionpilot` CLI, one module per subsystem, each exposing `register`."""
