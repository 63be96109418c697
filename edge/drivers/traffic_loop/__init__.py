"""Inductive-loop detector driver (presence or pulse output, optional loop pair)."""
