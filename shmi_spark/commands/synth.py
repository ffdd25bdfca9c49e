"""shmi synth (being built)."""


def add_arguments(parser):
    pass


def run(args) -> int:
    raise NotImplementedError("shmi synth is not built yet")
