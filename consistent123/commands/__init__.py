"""One module per ``consistent123`` sub-command: ``add_arguments(parser)`` and ``run(args, cfg)``; the work is in the library."""
