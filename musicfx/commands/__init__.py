"""The ``musicfx`` subcommands beyond training: one module per command, each with ``add_parser(commands)``
(see :data:`musicfx.cli.COMMAND_MODULES`); their shared flags and helpers are in :mod:`musicfx.commands.common`.
What a command does with files lives in the library (:mod:`musicfx.inference`, :mod:`musicfx.debleed`,
:mod:`musicfx.automix`, :mod:`musicfx.evaluate`): library modules never import from here."""
