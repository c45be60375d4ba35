"""One module per command: plain functions the CLI, tests and other programs call."""
