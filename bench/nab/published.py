"""Published NAB scores of other detectors on the files provided here (from
shared/NAB_SCORING.md): (standard, reward_low_FP_rate, reward_low_FN_rate)."""

from __future__ import annotations

Scores = tuple[float, float, float]

# detector -> (all provided files, realTraffic)
PUBLISHED: dict[str, tuple[Scores, Scores]] = {
    "ARTime": ((77.0, 67.7, 82.3), (86.9, 81.5, 91.2)),
    "CAD OSE": ((75.4, 72.7, 77.8), (91.2, 88.4, 92.7)),
    "Numenta HTM": ((73.0, 65.8, 76.8), (82.5, 75.7, 86.0)),
    "HTM Java": ((68.2, 55.8, 72.6), (76.4, 64.1, 79.5)),
    "Numenta TM": ((67.6, 61.4, 71.9), (77.1, 76.7, 80.0)),
    "earthgecko Skyline": ((63.2, 49.8, 69.2), (76.5, 73.5, 79.6)),
    "KNN CAD": ((60.5, 46.4, 66.8), (49.9, 40.0, 54.7)),
    "Relative Entropy": ((55.6, 49.2, 59.4), (78.6, 71.3, 83.4)),
    "Random Cut Forest": ((53.4, 42.7, 62.1), (63.8, 36.8, 66.1)),
    "Twitter ADVec": ((51.1, 36.0, 58.1), (57.7, 55.7, 59.9)),
    "Windowed Gaussian": ((44.8, 23.0, 53.6), (64.3, 61.5, 66.7)),
    "Etsy Skyline": ((40.7, 31.1, 50.8), (74.9, 49.6, 78.5)),
    "Bayesian Changepoint": ((21.4, 11.4, 34.1), (44.1, 25.1, 51.8)),
    "EXPoSE": ((17.0, 2.8, 27.9), (36.1, 0.0, 55.9)),
}
