"""Rich progress bars for long transfers: bytes, rate, ETA, and which file is moving.

Core reports plain ``TransferStatus`` snapshots; this module is the only place they become
pixels. Bars go to stderr so ``--output json`` on stdout stays one clean document.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from core.storage.transfer import TransferProgress, TransferStatus

stderr_console = Console(stderr=True)


@contextmanager
def transfer_progress(description: str) -> Iterator[TransferProgress]:
    """A live bar for one upload or download; yields the callback to hand to core."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[files]}"),
    )
    with Progress(*columns, console=stderr_console, transient=False) as progress:
        task = progress.add_task(description, total=None, files="")

        def update(status: TransferStatus) -> None:
            files = f"{status.files_done}/{status.files_total} files"
            if status.current:
                files += f"  {status.current}"
            if status.bytes_total:
                progress.update(task, completed=status.bytes_done, total=status.bytes_total, files=files)
            else:  # only empty files: show completion by file count
                finished = status.files_done == status.files_total
                progress.update(task, completed=int(finished), total=1, files=files)

        try:
            yield update
        except BaseException:
            progress.remove_task(task)  # the error line says what happened; a half bar would only distract
            raise
