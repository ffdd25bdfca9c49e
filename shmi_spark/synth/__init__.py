"""Synthetic national HES APC + ONS world with planted truth (``shmi synth``).

Modules, in import order (each imports only those above it):

* :mod:`.numeric` — numpy helpers (logit, sigmoid, seeds, segments, inverse-CDF draws).
* :mod:`.paper` — the published Tables 2-4 the world is calibrated to.
* :mod:`.casemix` — per-trust case-mix profiles (age, elective work, coding depth, diagnosis mix,
  deprivation, palliative coding) and the draw of a patient's home trust given the patient's age.
* :mod:`.dates` — day offsets → dates, months, financial years.
* :mod:`.hsmr` — what the HSMR needs: transfers between trusts, palliative care rising with the risk,
  emergency admissions in the year before raising it, a trust with excess deaths after discharge only.
* :mod:`.spells` — the spell table: kinds of spell and the columns of a spell.
* :mod:`.world` — the world's parameters and the draft (uncalibrated) world; the death model (METHOD.md §5).
* :mod:`.patients` — analysis admissions of fresh patients and their planted outcomes.
* :mod:`.calibrate` — calibration to Tables 2-3 and the planted Table 4 outliers; :func:`build_world`.
* :mod:`.dirty` — planted data problems (dirty codes, invalid covariate codes, malformed rows; METHOD.md §2).
* :mod:`.chunk` — one chunk's spell table: analysis spells, excluded kinds, traps and junk.
* :mod:`.episodes` — spells → HES episode rows (METHOD.md §1 fields).
* :mod:`.write` — episode rows → partitioned parquet.
* :mod:`.truth` — METHOD.md §2-§3 on the clean arrays; the truth files.
* :mod:`.generate` — orchestration (``shmi synth``).
* :mod:`.check` — a world's Tables 2-3 beside the paper, and the R² across trusts of crude on case-mix
  expected death rate; :mod:`.recovery` — fitted vs planted coefficients.
"""

__all__: list[str] = []
