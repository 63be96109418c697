"""Plantower PMS5003 / PMS5003T particle sensor over a serial port."""
