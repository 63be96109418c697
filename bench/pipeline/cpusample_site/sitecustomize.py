"""On PYTHONPATH (with the repository's root), starts bench.pipeline.cpusample's sampler in
a `cloud run` process when URBANPULSE_CPUSAMPLE_OUT is set; does nothing elsewhere."""

import os

if os.environ.get("URBANPULSE_CPUSAMPLE_OUT"):
    from bench.pipeline.cpusample import install_from_env

    install_from_env()
