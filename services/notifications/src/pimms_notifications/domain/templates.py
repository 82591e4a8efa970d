"""Which template text to use, and how a text becomes a message (string.Template)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from string import Template

from pimms_notifications.domain.wording import DEFAULT_LANGUAGE

SUBJECT_PREFIX = "Subject:"


class TemplateError(ValueError):
    """A template file does not have the expected shape."""


@dataclass(frozen=True)
class Rendered:
    """A message's text: a subject (e-mail, inbox) and a body."""

    subject: str | None
    body: str


def pick_language(requested: str, available: Collection[str]) -> str:
    """`requested` if the template exists in it, else the default language."""
    return requested if requested in available else DEFAULT_LANGUAGE


def split_subject(source: str) -> tuple[str, str]:
    """`Subject: ...`, a blank line, the body -> (subject, body); TemplateError otherwise."""
    first, _, rest = source.partition("\n")
    if not first.startswith(SUBJECT_PREFIX):
        raise TemplateError("the first line must be 'Subject: ...'")
    blank, _, body = rest.partition("\n")
    if blank.strip():
        raise TemplateError("a blank line must follow the subject line")
    subject = first.removeprefix(SUBJECT_PREFIX).strip()
    if not subject or not body.strip():
        raise TemplateError("the subject and the body must not be empty")
    return subject, body


def render(source: str, variables: Mapping[str, str], *, with_subject: bool) -> Rendered:
    """Fill a template; KeyError names a variable the template needs and was not given."""
    if with_subject:
        subject, body = split_subject(source)
        return Rendered(
            subject=Template(subject).substitute(variables),
            body=Template(body).substitute(variables).strip() + "\n",
        )
    return Rendered(subject=None, body=Template(source).substitute(variables).strip() + "\n")
