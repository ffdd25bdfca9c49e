"""The published figures the world is calibrated to: Tables 2-4 of the SHMI paper.

Campbell MJ, Jacques RM, Fotheringham J, Maheswaran R, Nicholl J.  Developing a
summary hospital mortality index: retrospective analysis in English hospitals
over five years.  BMJ 2012;344:e1001.  Table 2 (deaths by age band and sex),
Table 3 (by admission type, deprivation fifth and Charlson band) and Table 4
(the number of outlying trusts a year), as in
``shared/calibration/bmj2012_tables.csv``.  :mod:`.calibrate` rakes the world
to Tables 2-3 and plants Table 4's outliers; :mod:`.check` sets a world's
counts beside Tables 2-3.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from shmi_spark.hes.levels import AGE_LEVELS

__all__ = ["CALIBRATION_CSV", "calibration_targets", "FULL_SCALE", "TABLE2_BANDS", "TABLE2_BAND_NAMES",
           "TABLE2_BAND_OF_AGE_BAND",
           "TABLE2_BAND_OF_AGE_LEVEL", "OUTLIER_PATTERN"]

#: Tables 2-4 as published (T4: outlying trusts a year in ``admissions``).
CALIBRATION_CSV = """table,variable,level,sex,deaths,admissions,pct_died
T2,age,<1,M,9023,1242359,0.7
T2,age,<1,F,7265,976381,0.7
T2,age,1-4,M,990,896570,0.1
T2,age,1-4,F,847,664736,0.1
T2,age,5-14,M,1157,969256,0.1
T2,age,5-14,F,1014,775243,0.1
T2,age,15-24,M,3132,1215664,0.3
T2,age,15-24,F,1974,1335480,0.1
T2,age,25-34,M,5117,1277416,0.4
T2,age,25-34,F,3744,1383334,0.3
T2,age,35-44,M,13279,1697032,0.8
T2,age,35-44,F,11277,1692040,0.7
T2,age,45-54,M,31299,1895815,1.7
T2,age,45-54,F,26078,1803346,1.4
T2,age,55-64,M,79815,2472297,3.2
T2,age,55-64,F,58855,2084589,2.8
T2,age,65-74,M,156178,2839494,5.5
T2,age,65-74,F,113757,2398270,4.7
T2,age,75-84,M,269426,2700884,10.0
T2,age,75-84,F,257784,2924310,8.8
T2,age,85+,M,195446,1114540,17.5
T2,age,85+,F,329350,2067313,15.9
T2,age,missing,M,878,32844,2.7
T2,age,missing,F,696,23391,3.0
T2,age,total,M,765740,18354171,4.2
T2,age,total,F,812641,18128433,4.5
T3,admission_type,emergency,all,1501055,27395986,5.5
T3,admission_type,elective,all,76748,9057433,0.8
T3,admission_type,missing,all,847,35274,2.4
T3,imd_fifth,1 least deprived,all,346890,8874140,3.9
T3,imd_fifth,2,all,328466,7439153,4.4
T3,imd_fifth,3,all,318109,6815773,4.7
T3,imd_fifth,4,all,301006,6329181,4.8
T3,imd_fifth,5 most deprived,all,259536,5697075,4.6
T3,imd_fifth,missing,all,24643,1333371,1.8
T3,charlson,0,all,507279,25935482,2.0
T3,charlson,1-5,all,192125,4702488,4.1
T3,charlson,>5,all,879246,5850723,15.0
T3,total,all,all,1578650,36488693,4.3
T4,outlying_trusts,2005/06,all,,4,
T4,outlying_trusts,2006/07,all,,2,
T4,outlying_trusts,2007/08,all,,2,
T4,outlying_trusts,2008/09,all,,3,
T4,outlying_trusts,2009/10,all,,2,
"""


def calibration_targets() -> pd.DataFrame:
    """Tables 2-4 as a frame (columns of :data:`CALIBRATION_CSV`; ``level`` kept as text)."""
    return pd.read_csv(io.StringIO(CALIBRATION_CSV), dtype={"level": str})


#: Admissions of the paper's analysis (Table 3 total): the world's "full scale".
FULL_SCALE = 36_488_693

#: Table 2 age bands → indices of the model's age bands (:data:`shmi_spark.hes.levels.AGE_LEVELS`).
TABLE2_BANDS = {"<1": [0], "1-4": [1], "5-14": [2, 3], "15-24": [4, 5], "25-34": [6, 7],
                "35-44": [8, 9], "45-54": [10, 11], "55-64": [12, 13], "65-74": [14, 15],
                "75-84": [16, 17], "85+": [18, 19], "missing": [20]}
TABLE2_BAND_NAMES = list(TABLE2_BANDS)
#: model age-band index → Table 2 age-band index
TABLE2_BAND_OF_AGE_BAND = np.zeros(len(AGE_LEVELS), dtype=np.int8)
for _position, _age_bands in enumerate(TABLE2_BANDS.values()):
    TABLE2_BAND_OF_AGE_BAND[_age_bands] = _position
#: model age band (docs/tables.md AGE_BAND) → Table 2 age band
TABLE2_BAND_OF_AGE_LEVEL = {AGE_LEVELS[i]: name for name, age_bands in TABLE2_BANDS.items() for i in age_bands}

#: Table 4 pattern: (trust slot, financial years).  Slot k = the k-th planted trust.
OUTLIER_PATTERN = [(0, [2005, 2006]), (1, [2005]), (2, [2005]), (3, [2005]),
                   (4, [2006, 2008, 2009]), (5, [2007, 2008]), (6, [2007, 2009]), (7, [2008])]
