"""Pin factory choice: by config or environment, never importing a missing backend."""

import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.errors import EdgeError
from edge.gpio.errors import GpioBackendUnavailable
from edge.gpio.factory import (
    ENV_BACKEND,
    SharedPinFactory,
    is_pi5,
    make_pin_factory,
    read_board_model,
    resolve_backend,
    validate_backend,
)
from urbanpulse.errors import ConfigError

PI5 = "Raspberry Pi 5 Model B Rev 1.0"
PI4 = "Raspberry Pi 4 Model B Rev 1.4"


def only(*modules: str):
    return lambda name: name in modules


def test_validate_backend_names_the_key() -> None:
    assert validate_backend("lgpio", "gpio.backend") == "lgpio"
    with pytest.raises(ConfigError) as err:
        validate_backend("pigpio", "gpio.backend")
    assert err.value.key == "gpio.backend"
    assert "auto, lgpio, rpigpio, mock" in err.value.reason


def test_environment_overrides_the_config() -> None:
    env = {ENV_BACKEND: "mock"}
    assert resolve_backend("lgpio", env=env, available=only("gpiozero")) == "mock"
    assert resolve_backend("lgpio", env={}, available=only("lgpio")) == "lgpio"


def test_bad_environment_value_is_refused() -> None:
    with pytest.raises(GpioBackendUnavailable, match=ENV_BACKEND):
        resolve_backend("lgpio", env={ENV_BACKEND: "gpiod"}, available=only("lgpio"))


def test_auto_prefers_lgpio_then_rpigpio_except_on_a_pi5() -> None:
    both = only("lgpio", "RPi.GPIO")
    assert resolve_backend("auto", env={}, board_model=PI5, available=both) == "lgpio"
    rpi = only("RPi.GPIO")
    assert resolve_backend("auto", env={}, board_model=PI4, available=rpi) == "rpigpio"
    with pytest.raises(GpioBackendUnavailable, match="no GPIO backend"):
        resolve_backend("auto", env={}, board_model=PI5, available=rpi)


def test_rpigpio_is_refused_on_a_pi5() -> None:
    with pytest.raises(GpioBackendUnavailable, match="RP1"):
        resolve_backend("rpigpio", env={}, board_model=PI5, available=only("RPi.GPIO"))


def test_missing_backend_module_is_a_clear_edge_error() -> None:
    with pytest.raises(GpioBackendUnavailable, match=r"'lgpio'.*not installed") as err:
        resolve_backend("lgpio", env={}, board_model=PI4, available=only())
    assert isinstance(err.value, EdgeError)


def test_make_pin_factory_never_imports_a_missing_backend() -> None:
    before = set(sys.modules)
    with pytest.raises(GpioBackendUnavailable):
        make_pin_factory("lgpio", env={}, board_model=PI4, available=only("gpiozero"))
    with pytest.raises(GpioBackendUnavailable):
        make_pin_factory("rpigpio", env={}, board_model=PI4, available=only("gpiozero"))
    imported = set(sys.modules) - before
    assert not {"lgpio", "gpiozero.pins.lgpio", "RPi", "RPi.GPIO",
                "gpiozero.pins.rpigpio"} & imported


def test_make_pin_factory_mock() -> None:
    factory = make_pin_factory("mock", env={}, board_model="")
    try:
        assert isinstance(factory, MockFactory)
    finally:
        factory.close()


def test_backend_that_fails_to_start_is_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    # lgpio looks installed but cannot be imported (a broken install): the error inside
    # gpiozero becomes ours, with the original as its cause
    monkeypatch.setitem(sys.modules, "lgpio", None)
    monkeypatch.delitem(sys.modules, "gpiozero.pins.lgpio", raising=False)
    with pytest.raises(GpioBackendUnavailable, match="failed to start") as err:
        make_pin_factory("lgpio", env={}, board_model=PI4, available=only("lgpio"))
    assert err.value.__cause__ is not None


def test_board_model_from_the_device_tree(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(PI5.encode() + b"\x00")
    assert read_board_model(model) == PI5
    assert read_board_model(tmp_path / "absent") is None
    assert is_pi5(PI5)
    assert is_pi5("Raspberry Pi Compute Module 5 Rev 1.0")
    assert is_pi5("Raspberry Pi 500 Rev 1.0")
    assert not is_pi5(PI4)
    assert not is_pi5("Raspberry Pi 3 Model B Plus Rev 1.3")
    assert not is_pi5(None)


def test_shared_factory_is_made_once_and_remade_after_close() -> None:
    shared = SharedPinFactory("mock", env={}, board_model="")
    first = shared()
    assert shared() is first
    shared.close()
    second = shared()
    assert second is not first
    shared.close()
