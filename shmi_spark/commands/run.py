"""shmi run (being built)."""


def add_arguments(parser):
    pass


def run(args) -> int:
    raise NotImplementedError("shmi run is not built yet")
