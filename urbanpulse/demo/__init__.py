"""`urbanpulse demo`: a small simulated city through the whole pipeline, on the local stack."""
