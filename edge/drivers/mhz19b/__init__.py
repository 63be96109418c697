"""Winsen MH-Z19B NDIR CO2 sensor over a serial port."""
