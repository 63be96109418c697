"""Domain logic of the dataflow in plain Python: no Bytewax types in here."""
