"""The agent's `StateKeeper` for counting drivers: state staged by a driver waits for the
agent's next commit, which writes it with the readings emitted after it (edge.outbox)."""

from __future__ import annotations

from edge.outbox import Outbox


class StagedState:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._staged: dict[str, str] = {}

    def load(self, key: str) -> str | None:
        """Staged state first (a driver restarted before the next commit), then committed."""
        staged = self._staged.get(key)
        return staged if staged is not None else self.outbox.load_state(key)

    def stage(self, key: str, value: str) -> None:
        self._staged[key] = value

    def take(self) -> dict[str, str]:
        """What the next commit writes; staged state is handed over once."""
        staged, self._staged = self._staged, {}
        return staged

    def give_back(self, taken: dict[str, str]) -> None:
        """State `take` handed to a commit that failed: staged again for the next one,
        under what was staged since (newer)."""
        self._staged = {**taken, **self._staged}
