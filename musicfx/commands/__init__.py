"""``musicfx`` subcommands beyond training and ``denoise``: one module per command, each with
``add_parser(commands)`` (see :data:`musicfx.cli.COMMAND_MODULES`)."""
