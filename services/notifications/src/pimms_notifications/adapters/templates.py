"""Template files: `templates/<lang>/<template>.<channel>.txt`, read once at start and checked.

SMS templates are one short text; e-mail and mediator-inbox templates start with a
`Subject: ...` line and a blank line. Visitor templates exist for every supported language,
mediator templates in French.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pimms_notifications.domain.notices import MEDIATOR_TEMPLATES, VISITOR_TEMPLATES
from pimms_notifications.domain.templates import (
    Rendered,
    TemplateError,
    pick_language,
    render,
    split_subject,
)
from pimms_notifications.domain.wording import MEDIATOR_LANGUAGE, SUPPORTED_LANGUAGES

CHANNELS = ("sms", "email", "mediator_inbox")
WITH_SUBJECT = frozenset({"email", "mediator_inbox"})

TemplateKey = tuple[str, str, str]  # language, template, channel


def default_root() -> Traversable:
    """The templates shipped with the package."""
    return resources.files("pimms_notifications") / "templates"


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
        missing = [
            f"{language}/{template}.{channel}.txt"
            for language in SUPPORTED_LANGUAGES
            for template in sorted(VISITOR_TEMPLATES)
            for channel in ("sms", "email")
            if (language, template, channel) not in self._texts
        ] + [
            f"{MEDIATOR_LANGUAGE}/{template}.mediator_inbox.txt"
            for template in sorted(MEDIATOR_TEMPLATES)
            if (MEDIATOR_LANGUAGE, template, "mediator_inbox") not in self._texts
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
