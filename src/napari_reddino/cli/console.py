"""Terminal output of the ``napari-reddino`` command: progress bars and one-line messages.

A leaf module (the CLI's subcommand modules and the demo all print through it, so none of them
needs to import another for it).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from napari_reddino.progress import Progress, run_to_completion

T = TypeVar("T")


def say(text: str) -> None:
    """Print one message line (rich markup), never wrapped."""
    from rich.console import Console

    Console(highlight=False, soft_wrap=True).print(text)


def drive(gen: Generator[Progress, Any, T], description: str, *, quiet: bool = False) -> T:
    """Run a core progress generator under a rich progress bar (on stderr); return its result."""
    if quiet:
        return run_to_completion(gen)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Bar(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(p: Progress) -> None:
            text = f"{description}: {p.message}" if p.message else description
            bar.update(task, completed=p.done, total=max(p.total, 1), description=text)

        return run_to_completion(gen, update)
