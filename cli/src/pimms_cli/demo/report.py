"""The table at the end of the demo: each case, its reference, partners, final state, checks."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from pimms_cli.demo.checks import problems
from pimms_cli.demo.observer import Followed
from pimms_cli.demo.story import DeadLettered, SameAnswer, SameNeedAs, Story
from pimms_cli.terminal import table


def status_text(story: Story, seen: Followed, followed: Sequence[Followed]) -> str:
    """Where the case ended, in a few words."""
    if isinstance(story.expect, DeadLettered):
        return "dead-lettered (not JSON)" if seen.dead_lettered else "?"
    if isinstance(story.expect, SameAnswer) and isinstance(story.submission, SameNeedAs):
        original = followed[story.submission.story]
        return f"same answer again ({original.case_reference})" if seen.feedback else "?"
    if seen.feedback and seen.feedback[0] == "rejected":
        return "rejected: " + ", ".join(seen.codes)
    if seen.closed:
        return "\n".join([f"closed: {seen.closed}", *loop_lines(seen)])
    if "unroutable" in seen.statuses:
        return "open: unroutable, with the mediator"
    return seen.statuses[-1] if seen.statuses else "-"


def loop_lines(seen: Followed) -> list[str]:
    """What the closed loop did on the way: documents held and released, a partner chased."""
    lines = []
    if seen.held:
        lines.append("held, missing " + ", ".join(seen.held[0]))
    if seen.released:
        lines.append("documents added: released")
    for partner, count in seen.reminders_received.items():
        lines.append(f"{partner} got relance x{count}")
    lines += [step.split(" ", 1)[1] for step in seen.chased if step.endswith(" escalated")]
    return lines


def partners_text(seen: Followed) -> str:
    """Each partner's last status, with its outcome or reason, one per line."""
    lines = []
    for partner, status in seen.partners.items():
        detail = seen.outcomes.get(partner)
        lines.append(f"{partner}: {status}" + (f" ({detail})" if detail else ""))
    return "\n".join(lines) or "-"


def notes_text(seen: Followed) -> str:
    """Notifications sent, unreachable visitors, partner dead letters, one per line."""
    notes = [
        f"{kind.replace(' mediator_inbox', '')} x{count}"
        for kind, count in sorted(seen.notifications.items())
    ]
    if "no_reachable_channel" in seen.failures:
        notes.append("visitor unreachable")
    notes += [f"partner DLT {reason}" for reason in seen.partner_dead_letters]
    return "\n".join(notes) or "-"


def report(stories: Sequence[Story], followed: Sequence[Followed]) -> Table:
    """One row per story; the check column says ok or what is wrong."""
    grid = table("#", "Situation", "Partners", "Final status", "Notified", "Check")
    grid.expand = True  # the ratios below share the width
    grid.columns[0].justify = "right"
    for column, ratio in zip(grid.columns[1:], (8, 6, 6, 5, 4), strict=True):
        column.ratio = ratio
        column.overflow = "fold"
    for index, (story, seen) in enumerate(zip(stories, followed, strict=True)):
        trouble = problems(index, stories=stories, followed=followed)
        check = (
            Text("ok", style="green")
            if not trouble
            else Text("FAIL: " + "; ".join(trouble), style="bold red")
        )
        situation = Text(story.label)
        if seen.case_reference:
            situation.append("\n" + seen.case_reference, style="bold cyan")
        grid.add_row(
            str(index + 1),
            situation,
            partners_text(seen),
            status_text(story, seen, followed),
            notes_text(seen),
            check,
        )
    return grid
