"""A processor never starts a new recovery store by itself beside journals that a processor
has already read and trimmed.

A new store means empty states: the processor reads the journals from their start and
rebuilds every window, domain rollup and ledger hour from what they still hold. Where a
trim let records go (they were read, written and committed by the processor whose store
was lost), the hours those records belong to would be written again from the rest, over
the complete figures stored: partial counts, means, occupancy and ledgers, without a word.
So `cloud run` refuses such a start, naming the journals; `cloud new-state` makes the store
on purpose, and says what to rebuild afterwards (docs/runbook.md, "Recovery store lost")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloud.errors import CloudError
from cloud.journal import Journal, journal_files


@dataclass(frozen=True)
class Trimmed:
    path: Path
    let_go: int  # records 1..let_go are gone
    first_received_ns: int | None  # the oldest record still held: when it was received


class FreshStateRefused(CloudError):
    """A new recovery store beside trimmed journals, not asked for."""


def store_is_new(rdir: Path) -> bool:
    """No store yet: `cloud run` would make one (cli.prepare_recovery_dir)."""
    return not rdir.exists() or not any(rdir.iterdir())


def trimmed_journals(directory: Path) -> list[Trimmed]:
    """The journals in `directory` that have let records go, by name."""
    out: list[Trimmed] = []
    for partition, path in journal_files(directory):
        journal = Journal(path, partition).open(create=False)
        try:
            first = journal.first_kept()
            held = journal.read(first - 1, 1)
        finally:
            journal.close()
        if first > 1:
            out.append(Trimmed(path, first - 1, held[0].received_ns if held else None))
    return out


def journal_sites(directory: Path) -> set[str]:
    """The sites whose nodes' messages the journals in `directory` hold (their topics:
    urbanpulse/v1/SITE/NODE/...)."""
    sites: set[str] = set()
    for partition, path in journal_files(directory):
        journal = Journal(path, partition).open(create=False)
        try:
            sites.update(t.split("/")[2] for t in journal.topics() if t.count("/") >= 3)
        finally:
            journal.close()
    return sites


def check_new_store(rdir: Path, journal_dir: Path) -> None:
    """Raises FreshStateRefused if `cloud run` would make a new store at `rdir` while a
    journal of `journal_dir` has let records go."""
    if not store_is_new(rdir):
        return
    trimmed = trimmed_journals(journal_dir)
    if trimmed:
        gone = ", ".join(f"{t.path.name} (records 1-{t.let_go})" for t in trimmed)
        raise FreshStateRefused(
            f"the recovery store {rdir} is new (absent or empty), but journals a processor has "
            f"already read and trimmed are beside it: {gone}. Started on a new store, the "
            "processor would write the windows, domain rollups and ledger hours of what they "
            "still hold from that part alone, over the complete figures stored. Put back the "
            "store's copy (docs/runbook.md, 'Upgrading or rolling back the processor'); if it "
            "is lost, make a new one on purpose with `urbanpulse cloud new-state --config FILE`, "
            "which says what to rebuild afterwards (docs/runbook.md, 'Recovery store lost')")
