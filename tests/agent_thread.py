"""The real edge agent run in the test's process: its own event loop on a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from edge.agent import Agent
from edge.config import load_config


@contextlib.contextmanager
def agent_in_thread(agent_or_config: Agent | Path) -> Iterator[Agent]:
    """The agent (or the agent of a config file), running while the block runs; then
    stopped as SIGTERM stops it (the outbox flushed) and checked to have ended."""
    agent = agent_or_config if isinstance(agent_or_config, Agent) else Agent(load_config(agent_or_config))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(agent.run(stop))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    assert not thread.is_alive(), "the agent did not stop"
