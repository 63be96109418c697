"""Serial protocols of sensor modules and of our own firmware: decoders, commands, emulators."""
