"""Template files: `templates/<lang>/<template>.<channel>.txt`, read once at start and checked.

SMS templates are one short text; e-mail and mediator-inbox templates start with a
`Subject: ...` line and a blank line. Visitor templates exist for every supported language,
mediator templates in French. Every visitor template also has a `line`: the one sentence it
contributes when several notices of one moment make one message (`combined`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pimms_notifications.domain.notices import (
    ALL_MEDIATOR_TEMPLATES,
    ALL_VISITOR_TEMPLATES,
    COMBINED,
)
from pimms_notifications.domain.templates import (
    Rendered,
    TemplateError,
    pick_language,
    render,
    split_subject,
)
from pimms_notifications.domain.wording import MEDIATOR_LANGUAGE, SUPPORTED_LANGUAGES

LINE = "line"
CHANNELS = ("sms", "email", "mediator_inbox", LINE)
WITH_SUBJECT = frozenset({"email", "mediator_inbox"})
_SUBJECT_REFERENCE = re.compile(r"^\[[^\]]*\]\s*")

TemplateKey = tuple[str, str, str]  # language, template, channel


def default_root() -> Traversable:
    """The templates shipped with the package."""
    return resources.files("pimms_notifications") / "templates"


@dataclass(frozen=True)
class Part:
    """One notice of a moment: its template and the words it may say."""

    template: str
    variables: Mapping[str, str]


class TemplateLibrary:
    """Every template text, by language, template name and channel."""

    def __init__(self, texts: Mapping[TemplateKey, str]) -> None:
        self._texts = dict(texts)

    @classmethod
    def load(cls, root: Traversable | Path | None = None) -> TemplateLibrary:
        """Read the template folder; raise TemplateError naming what is missing or malformed."""
        folder = root or default_root()
        texts: dict[TemplateKey, str] = {}
        for language_dir in folder.iterdir():
            if not language_dir.is_dir():
                continue
            for entry in language_dir.iterdir():
                name = entry.name
                if not name.endswith(".txt") or name.startswith("."):
                    continue
                template, _, channel = name.removesuffix(".txt").rpartition(".")
                if channel not in CHANNELS or not template:
                    raise TemplateError(f"{language_dir.name}/{name}: unknown channel {channel!r}")
                text = entry.read_text(encoding="utf-8")
                if channel in WITH_SUBJECT:
                    try:
                        split_subject(text)
                    except TemplateError as exc:
                        raise TemplateError(f"{language_dir.name}/{name}: {exc}") from None
                texts[(language_dir.name, template, channel)] = text
        library = cls(texts)
        library.check()
        return library

    def check(self) -> None:
        """Every template the service may need exists."""
        visitor = [(t, ch) for t in sorted(ALL_VISITOR_TEMPLATES) for ch in ("sms", "email", LINE)]
        visitor += [(COMBINED, "sms"), (COMBINED, "email")]
        mediator = [(t, "mediator_inbox") for t in sorted(ALL_MEDIATOR_TEMPLATES | {COMBINED})]
        missing = [
            f"{language}/{template}.{channel}.txt"
            for language in SUPPORTED_LANGUAGES
            for template, channel in visitor
            if (language, template, channel) not in self._texts
        ] + [
            f"{MEDIATOR_LANGUAGE}/{template}.{channel}.txt"
            for template, channel in mediator
            if (MEDIATOR_LANGUAGE, template, channel) not in self._texts
        ]
        if missing:
            raise TemplateError(f"missing template(s): {', '.join(missing)}")

    def languages(self, *, template: str, channel: str) -> set[str]:
        """The languages a template exists in for a channel."""
        return {lang for (lang, name, ch) in self._texts if name == template and ch == channel}

    def render(
        self,
        *,
        template: str,
        channel: str,
        language: str,
        variables: Mapping[str, str],
    ) -> tuple[str, Rendered]:
        """(language used, text) of a template, in `language` or the default language."""
        used = pick_language(language, self.languages(template=template, channel=channel))
        source = self._texts[(used, template, channel)]
        return used, render(source, variables, with_subject=channel in WITH_SUBJECT)

    def render_combined(
        self, *, parts: Sequence[Part], channel: str, language: str
    ) -> tuple[str, Rendered]:
        """(language used, text) of one message saying every part of a moment, in order.

        To the visitor, each part is its one-sentence `line` inside the `combined` frame; in the
        mediator inbox, each part is its whole message under one subject. The frame's words
        (first name, case reference) come from the first part.
        """
        if not parts:
            raise ValueError("a moment has at least one part")
        frame = dict(parts[0].variables)
        if channel == "mediator_inbox":
            texts = [
                self.render(
                    template=part.template,
                    channel=channel,
                    language=language,
                    variables=part.variables,
                )[1]
                for part in parts
            ]
            subjects = [_SUBJECT_REFERENCE.sub("", text.subject or "") for text in texts]
            frame["subjects"] = " ; ".join(subjects)
            frame["updates"] = "\n\n".join(
                f"* {subject}\n{text.body.strip()}"
                for subject, text in zip(subjects, texts, strict=True)
            )
        else:
            used = pick_language(language, self.languages(template=COMBINED, channel=channel))
            lines = [
                render(
                    self._texts[(used, part.template, LINE)], part.variables, with_subject=False
                ).body.strip()
                for part in parts
            ]
            frame["lines"] = (
                " ".join(lines) if channel == "sms" else "\n".join(f"- {line}" for line in lines)
            )
        return self.render(template=COMBINED, channel=channel, language=language, variables=frame)
