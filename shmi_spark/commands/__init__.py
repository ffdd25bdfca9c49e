"""The sub-commands of ``shmi``: one module each, with ``add_arguments(parser)`` and ``run(args)``."""

__all__: list[str] = []
