"""Bed mat driver: an analogue mat on an MCP3008 ADC -> occupied, load, motion."""
