"""The coefficient-recovery check compares contrasts against the fitted reference level."""

from __future__ import annotations

import pandas as pd
import pytest

from shmi_spark.synth.recovery import coefficient_recovery


def test_contrasts_against_the_fitted_reference():
    truth = pd.DataFrame([(7, "INTERCEPT", "", -3.0), (7, "SEX_CAT", "male", 0.0), (7, "SEX_CAT", "female", -0.2),
                          (7, "DIS_FYEAR", "2005", 0.0), (7, "DIS_FYEAR", "2006", 0.1)],
                         columns=["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE"])
    fitted = pd.DataFrame([(7, "INTERCEPT", "", -3.2, 0.1, False), (7, "SEX_CAT", "female", 0.0, None, True),
                           (7, "SEX_CAT", "male", 0.25, 0.05, False), (7, "YEAR_INDEX", "1", 0.0, None, True),
                           (7, "YEAR_INDEX", "2", 0.4, 0.1, False)],
                          columns=["DIAG_GROUP", "TERM", "LEVEL", "ESTIMATE", "STD_ERROR", "REFERENCE"])
    diag = pd.DataFrame({"DIAG_GROUP": [7], "DEATHS": [900], "RULE": ["mle_limit"]})
    got = coefficient_recovery(fitted, diag, truth, first_year=2005).set_index("TERM")
    assert got.loc["SEX_CAT", "TRUE_CONTRAST"] == pytest.approx(0.2)
    assert got.loc["SEX_CAT", "Z"] == pytest.approx((0.25 - 0.2) / 0.05)
    assert got.loc["YEAR_INDEX", "Z"] == pytest.approx((0.4 - 0.1) / 0.1)
    small = diag.assign(DEATHS=[100])
    assert coefficient_recovery(fitted, small, truth, first_year=2005).empty
