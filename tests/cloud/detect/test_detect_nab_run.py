"""The NAB bench scores each file with the detector of the sensor kind it stands for."""

from __future__ import annotations

from pathlib import Path

from bench.nab.corpus import load_corpus
from bench.nab.run import BY_KIND, detector_for
from cloud.detect.profiles import DETECTORS


def test_road_traffic_files_get_the_traffic_detector_and_the_rest_the_default(
    nab_root: Path,
) -> None:
    corpus = load_corpus(nab_root)
    chosen = {f.key: detector_for(f, BY_KIND) for f in corpus}
    assert {k for k, name in chosen.items() if name == "traffic"} == {
        f.key for f in corpus if f.category == "realTraffic"
    }
    assert set(chosen.values()) == {"traffic", "default"}
    assert all(name in DETECTORS for name in chosen.values())
    assert {detector_for(f, "default") for f in corpus} == {"default"}
