"""Device emulators behind pseudo-terminals."""

from firmware_bridge.emulator.pty_device import EmulatorError, PtyEmulator

__all__ = ["EmulatorError", "PtyEmulator"]
