"""Nova Fitness SDS011 particulate sensor over a serial port."""
