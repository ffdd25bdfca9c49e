"""Sub-commands of ``shmi``: one module each, ``add_arguments`` and ``run``."""
