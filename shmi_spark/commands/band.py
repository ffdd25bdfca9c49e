"""shmi band (being built)."""


def add_arguments(parser):
    pass


def run(args) -> int:
    raise NotImplementedError("shmi band is not built yet")
