"""One module per command, each with one `*_command` function: the CLI calls it, and so can tests and
other programs, giving it a `console.Console` to say things and ask through."""
