"""Telling a PMS5003 from a PMS5003T: frames with words set by hand, then the probe on
emulated sensors over a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

import pytest

from firmware_bridge.probe import probe
from firmware_bridge.protocols.pms5003.decoder import Pms5003Decoder, Pms5003tDecoder
from firmware_bridge.protocols.pms5003.emulator import Pms5003Emulator, Pms5003tEmulator
from firmware_bridge.protocols.pms5003.frames import Pms5003Measurement, Pms5003tMeasurement
from firmware_bridge.protocols.pms5003.model import tell_model

# A PMS5003T at 35.0 °C and 30.0 % in dusty air (n2_5 = 400), laid out by hand:
# words 30 45 70 30 45 70 6000 1800 600 400, then 350 (01 5E) and 300 (01 2C), version 0x97;
# check word = sum of bytes 0-29 = 0x0471.
HOT_DRY_T = bytes.fromhex(
    "424d001c" "001e002d0046" "001e002d0046" "1770" "0708" "0258" "0190" "015e" "012c" "9700" "0471"
)


def _frame(n0_3: int, n2_5: int, w11: int, w12: int) -> Pms5003Measurement:
    """A frame as the plain decoder reads it: w11 and w12 are the raw words 11-12."""
    return Pms5003Measurement(pm1_cf1=30, pm25_cf1=45, pm10_cf1=70, pm1=30, pm25=45, pm10=70,
                              n0_3=n0_3, n0_5=n0_3 // 3, n1_0=n0_3 // 10, n2_5=n2_5,
                              n5_0=w11, n10_0=w12)


def test_the_hand_laid_frame_reads_as_either_model() -> None:
    (plain,) = Pms5003Decoder().feed(HOT_DRY_T)
    (t,) = Pms5003tDecoder().feed(HOT_DRY_T)
    assert isinstance(plain, Pms5003Measurement)
    assert isinstance(t, Pms5003tMeasurement)
    assert (plain.n2_5, plain.n5_0, plain.n10_0) == (400, 350, 300)
    assert (t.temperature_c, t.humidity_pct) == (35.0, 30.0)
    # one frame passes every fact for both models: the old single-frame rule said PMS5003
    assert tell_model([plain]) is None


# Counts jump from frame to frame (n0_3 6000 -> 7200 -> 5400, n2_5 400 -> 480 -> 380).
DUST = [(6000, 400), (7200, 480), (5400, 380)]


def test_hot_dry_dusty_air_is_a_t_once_the_counts_move() -> None:
    # words 11-12 hold still: 35.0-35.1 °C, 30.0-30.2 %
    frames = [_frame(n0_3, n2_5, w11, w12)
              for (n0_3, n2_5), (w11, w12) in zip(DUST, [(350, 300), (351, 301), (350, 302)], strict=True)]
    assert tell_model(frames[:2]) is None  # two frames: too few to weigh how much they move
    assert tell_model(frames) == "pms5003t"


def test_a_plain_pms5003_in_the_same_dust() -> None:
    # > 5 µm and > 10 µm counts: 120 -> 150 is a 3 °C step for a T, which it cannot make
    frames = [_frame(n0_3, n2_5, w11, w12)
              for (n0_3, n2_5), (w11, w12) in zip(DUST, [(120, 20), (150, 30), (100, 15)], strict=True)]
    assert tell_model(frames[:2]) == "pms5003"


def test_a_plain_pms5003_whose_counts_move_within_a_ts_steps() -> None:
    # Every step of words 11-12 is within a T's (10 and 6 a frame), but they move with the
    # other counts: n5_0 340..390 spreads 50/390 = 0.128, n0_3 6000..7500 spreads 0.2 and
    # n2_5 400..480 0.167; 0.128 is over half of 0.2, so these are counts.
    frames = [_frame(n0_3, n2_5, w11, w11 - 60) for n0_3, n2_5, w11 in
              [(6000, 400, 340), (6600, 430, 350), (7500, 480, 360), (7000, 460, 370),
               (6400, 420, 380), (6900, 450, 390)]]
    assert tell_model(frames) == "pms5003"
    # The same counts beside words that move less are neither: 340..370 spreads 30/370 =
    # 0.081, between a quarter (0.05) and a half (0.1) of 0.2
    between = [_frame(f.n0_3, f.n2_5, w11, 300) for f, w11 in zip(frames, range(340, 371, 6), strict=True)]
    assert tell_model(between) is None


def test_facts_of_one_frame() -> None:
    # a PMS5003T at 29.5 °C and 74 %: more "> 5 µm" than "> 2.5 µm" particles, so a T
    assert tell_model([_frame(1500, 25, 295, 740)]) == "pms5003t"
    # more "> 10 µm" than "> 5 µm" particles: a T (24.0 °C, 61.0 %)
    assert tell_model([_frame(60000, 3000, 240, 610)]) == "pms5003t"
    # word 12 of 1200 is 120 % humidity: a PMS5003 in very dusty air
    assert tell_model([_frame(60000, 3000, 1500, 1200)]) == "pms5003"
    # 0xFFEC, -2.0 °C, is a count above any n2_5 here: a T in the cold
    assert tell_model([_frame(6000, 400, 0xFFEC, 850)]) == "pms5003t"


def test_clean_air_pms5003() -> None:
    # n5_0 and n10_0 of a few particles move as much as the other counts do
    frames = [_frame(1200, 20, 4, 0), _frame(1500, 26, 6, 1), _frame(1100, 18, 3, 0)]
    assert tell_model(frames) == "pms5003"


def test_clean_air_pms5003_with_no_large_particles() -> None:
    # Filtered or clean air: no particle > 5 µm for minutes, so words 11-12 hold still at 0
    # (or 2 and 0) while the fine counts move. Still words are not a PMS5003T here: it would
    # be reading 0.0 % (0.0-0.2 %) humidity, which air does not have.
    for w11, w12 in [(0, 0), (2, 0), (2, 1), (9, 9)]:
        frames = [_frame(1200, 20, w11, w12), _frame(1500, 26, w11, w12), _frame(1100, 18, w11, w12)]
        assert tell_model(frames) == "pms5003", (w11, w12)
    # a PMS5003T at 25.0 °C in the driest air met outdoors still reads as one
    frames = [_frame(n0_3, n2_5, 250, 10) for n0_3, n2_5 in DUST]
    assert tell_model(frames) == "pms5003t"


def test_a_steady_stream_cannot_tell() -> None:
    assert tell_model([_frame(6000, 400, 350, 300)] * 6) is None


def test_frames_neither_model_sends() -> None:
    # a count order broken (so not a PMS5003) and a 5 °C step (so not a PMS5003T)
    assert tell_model([_frame(6000, 400, 300, 350), _frame(6000, 400, 350, 300)]) is None


def _cycle(frames: list[Pms5003Measurement]) -> Callable[[], Pms5003Measurement]:
    it: Iterator[Pms5003Measurement] = itertools.cycle(frames)
    return lambda: next(it)


def _cycle_t(words: list[tuple[int, int, int, int]]) -> Callable[[], Pms5003tMeasurement]:
    frames = [Pms5003tMeasurement(pm1_cf1=30, pm25_cf1=45, pm10_cf1=70, pm1=30, pm25=45, pm10=70,
                                  n0_3=n0_3, n0_5=n0_3 // 3, n1_0=n0_3 // 10, n2_5=n2_5,
                                  temperature_c=w11 / 10, humidity_pct=w12 / 10)
              for n0_3, n2_5, w11, w12 in words]
    it = itertools.cycle(frames)
    return lambda: next(it)


@pytest.mark.parametrize("model", ["pms5003t", "pms5003"])
def test_probe_tells_the_models_apart_in_hot_dry_dusty_air(model: str) -> None:
    if model == "pms5003t":
        emu: Pms5003Emulator | Pms5003tEmulator = Pms5003tEmulator(
            _cycle_t([(6000, 400, 350, 300), (7200, 480, 351, 301), (5400, 380, 350, 302)]),
            period_s=0.2, warmup_s=0.0)
    else:
        emu = Pms5003Emulator(_cycle([_frame(6000, 400, 350, 300), _frame(7200, 480, 380, 310),
                                      _frame(5400, 380, 330, 290)]), period_s=0.2, warmup_s=0.0)
    with emu:
        results = asyncio.run(probe(emu.port, listen_s=1.0, tell_s=3.0))
    assert [r.protocol for r in results] == [model]


def test_probe_returns_both_models_when_the_frames_cannot_tell() -> None:
    emu = Pms5003tEmulator(_cycle_t([(6000, 400, 350, 300)]), period_s=0.1, warmup_s=0.0)
    with emu:
        results = asyncio.run(probe(emu.port, listen_s=1.0, tell_s=0.5))
    assert sorted(r.protocol for r in results) == ["pms5003", "pms5003t"]
