"""Synthetic national HES APC + ONS world with planted truth (``shmi synth``).

Modules: :mod:`.world` (parameters and calibration), :mod:`.patients` (the
vectorised generator), :mod:`.chunk` (one chunk's spells of every kind),
:mod:`.episodes` (spells → HES episode rows), :mod:`.dirty` (planted data
problems), :mod:`.write` (parquet), :mod:`.truth` (METHOD.md §2-§3 on the
clean arrays; truth files), :mod:`.check` (Tables 2-3 vs the paper),
:mod:`.generate` (orchestration).
"""
