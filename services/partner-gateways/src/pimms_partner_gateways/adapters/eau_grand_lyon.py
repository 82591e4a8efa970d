"""Eau du Grand Lyon: CSV files (specs/partners.md, `eau-grand-lyon`). Pure: bytes in, bytes out.

Outbound, each referral, reminder or cancellation is one line; an export file is the header and
the lines gathered since the last export (`assemble_export`), written by the file-drop transport
under `temporary_name(...)` and renamed to `export_file_name(...)`. Inbound, `read_response_file`
returns the good lines as answers and every bad line with its reason, and never raises.

Everything written is ISO-8859-1: characters outside it are transliterated (`Łukasz` -> `Lukasz`,
any script, never dropped). Every cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
return is neutralised with a leading `'` (CSV injection, OWASP), except a phone number, which the
contracts hold to `+` and digits and which must reach the partner as it is.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from anyascii import anyascii
from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason
from pimms_servicekit.clock import PARIS, paris_time

from pimms_partner_gateways.adapters.base import (
    MAX_REFERENCE,
    BadPartnerMessage,
    check_reminder_number,
    quoted_word,
    safe_names,
)
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, ReadAnswer, Referral

ENCODING = "iso-8859-1"
SEPARATOR = ";"
CRLF = "\r\n"
PROCESSED_DIR = "processed"
OUTBOUND_HEADER = (
    "REFERENCE",
    "DOSSIER",
    "DATE_DEMANDE",
    "NOM",
    "PRENOM",
    "TELEPHONE",
    "CODE_POSTAL",
    "URGENCE",
    "DESCRIPTION",
)
INBOUND_HEADER = ("REFERENCE", "STATUT", "DATE", "MOTIF", "COMMENTAIRE")
ERROR_COLUMN = "ERREUR"
URGENCES = {"high": "1", "normal": "2", "low": "3"}
CANCELLATION_URGENCE = "0"
CANCELLATION_DESCRIPTION = "ANNULATION"

STATUTS: dict[str, PartnerReportedStatus] = {
    "RECU": "received",
    "ACCEPTE": "accepted",
    "EN_COURS": "in_progress",
    "ATTENTE": "on_hold",
    "TRAITE": "completed",
    "REFUSE": "rejected",
}
MOTIFS_TRAITE: dict[str, CompletionOutcome] = {
    "RESOLU": "resolved",
    "NON_RESOLU": "not_resolved",
    "INJOIGNABLE": "visitor_unreachable",
}
MOTIFS_REFUS: dict[str, RejectionReason] = {
    "HORS_PERIMETRE": "out_of_scope",
    "DOUBLON": "duplicate",
}

LineErrorReason = Literal[
    "bad_header",
    "bad_encoding",
    "malformed_line",
    "wrong_cell_count",
    "schema_invalid",
    "unknown_status",
    "unknown_outcome",
    "bad_date",
    "unknown_reference",
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PHONE = re.compile(r"^\+[0-9]{8,15}$")
_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2})$")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_UTF8_BOM = b"\xef\xbb\xbf"
_MAX_FIELD = 100_000


# --- text in ISO-8859-1 ---


def latin1_text(value: str) -> str:
    """The text with characters outside ISO-8859-1 transliterated: never empty if `value` isn't."""
    out: list[str] = []
    for char in value:
        if ord(char) < 0x100:
            out.append(char)
        else:
            out.append(_encodable(anyascii(char)))
    text = "".join(out)
    return text if text or not value else "?"


def _encodable(text: str) -> str:
    """anyascii is ASCII, but be sure: whatever still cannot be encoded becomes '?'."""
    return text.encode(ENCODING, errors="replace").decode(ENCODING)


def neutralise(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def csv_cell(value: str) -> str:
    """RFC 4180: quoted when it holds the separator, a quote or a line break; CRLF line breaks."""
    value = _NEWLINES.sub(CRLF, value)
    if any(special in value for special in (SEPARATOR, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_line(cells: Sequence[str], *, keep: frozenset[int] = frozenset()) -> bytes:
    """One CRLF-terminated ISO-8859-1 line, cells transliterated and neutralised (but `keep`)."""
    texts = [
        csv_cell(latin1_text(cell) if i in keep else neutralise(latin1_text(cell)))
        for i, cell in enumerate(cells)
    ]
    return (SEPARATOR.join(texts) + CRLF).encode(ENCODING, errors="replace")


def partner_date(at: datetime) -> str:
    """`JJ/MM/AAAA HH:MM` in Europe/Paris time."""
    return paris_time(at).strftime("%d/%m/%Y %H:%M")


# --- outbound ---


class EauGrandLyonAdapter:
    """Eau du Grand Lyon's CSV lines; the file-drop transport gathers them into export files."""

    format = "eau-grand-lyon"

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The referral's line (no header)."""
        return _referral_line(dossier, referral, description=dossier.summary)

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The line again, `DESCRIPTION` prefixed `RELANCE <n> - `."""
        prefix = f"RELANCE {check_reminder_number(number)} - "
        return _referral_line(dossier, referral, description=prefix + dossier.summary)

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """A line with `URGENCE` 0 and `DESCRIPTION` `ANNULATION`; `DATE_DEMANDE` is when."""
        return csv_line(
            (
                referral.referral_id,
                "",
                partner_date(at),
                "",
                "",
                "",
                "",
                CANCELLATION_URGENCE,
                CANCELLATION_DESCRIPTION,
            )
        )

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """One data line of a response file (header order); BadPartnerMessage otherwise."""
        return self.read_response(value).answer

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """One data line of a response file, in the header's column order."""
        result = read_response_file(csv_line(INBOUND_HEADER) + (value or b""))
        if result.bad_lines:
            bad = result.bad_lines[0]
            raise BadPartnerMessage(_message_reason(bad.reason), bad.error)
        if len(result.answers) != 1:
            raise BadPartnerMessage("schema_invalid", "expected exactly one line")
        return ReadAnswer(answer=result.answers[0].answer)


def _referral_line(dossier: Dossier, referral: Referral, *, description: str) -> bytes:
    phone = dossier.phone_for_partner or ""
    return csv_line(
        (
            referral.referral_id,
            dossier.case_reference,
            partner_date(dossier.submitted_at),
            dossier.last_name,
            dossier.first_name,
            phone,
            dossier.postal_code,
            URGENCES[dossier.urgency],
            description,
        ),
        keep=frozenset({5}) if _PHONE.match(phone) else frozenset(),
    )


def header_line(columns: Sequence[str] = OUTBOUND_HEADER) -> bytes:
    """The header line of an export file."""
    return (SEPARATOR.join(columns) + CRLF).encode(ENCODING)


def assemble_export(lines: Iterable[bytes]) -> bytes:
    """An export file: the header, then the lines in the order they were recorded."""
    return header_line() + b"".join(lines)


def export_file_name(*, at: datetime, sequence: int) -> str:
    """`PIMMS_EGL_<YYYYMMDDHHMMSS>_<n>.csv`, the time in Europe/Paris, `n` the export's number."""
    return f"PIMMS_EGL_{paris_time(at).strftime('%Y%m%d%H%M%S')}_{sequence}.csv"


def temporary_name(final_name: str) -> str:
    """Where a file is written before its rename: hidden, and not matching `*.csv`."""
    return f".{final_name}.part"


def errors_file_name(name: str) -> str:
    """`<name>.errors.csv` for an inbound file `<name>.csv` (placed in `processed/`)."""
    return f"{name.removesuffix('.csv')}.errors.csv"


# --- inbound ---


@dataclass(frozen=True, slots=True)
class LineAnswer:
    """A good line of a response file."""

    line: int
    cells: tuple[str, ...]
    answer: PartnerAnswer


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that cannot be applied, with its reason (written back in the errors file)."""

    line: int
    cells: tuple[str, ...]
    reason: LineErrorReason
    error: str

    @property
    def report(self) -> str:
        """The `ERREUR` cell: the reason code and what is wrong, never the line's content."""
        return f"{self.reason}: {self.error}"


@dataclass(frozen=True, slots=True)
class ResponseFile:
    """What a response file says: good lines, bad lines, and the columns it added."""

    header: tuple[str, ...]
    answers: tuple[LineAnswer, ...]
    bad_lines: tuple[BadLine, ...]
    unknown_fields: frozenset[str] = frozenset()


def unknown_reference(line: LineAnswer) -> BadLine:
    """A good line whose reference was never sent to this partner: a bad line after all."""
    return BadLine(
        line=line.line,
        cells=line.cells,
        reason="unknown_reference",
        error="no referral with this REFERENCE was sent to eau-grand-lyon",
    )


def read_response_file(data: bytes) -> ResponseFile:
    """Every line of an inbound file, good or bad with its reason; never raises."""
    if data.startswith(_UTF8_BOM):
        records = list(_records(data[len(_UTF8_BOM) :].decode(ENCODING)))
        header = tuple(cell.strip() for cell in records[0][1]) if records else ()
        return _all_bad(
            records[1:],
            "bad_encoding",
            "the file starts with a UTF-8 byte order mark: ISO-8859-1 is expected",
            header=header,
        )
    records = list(_records(data.decode(ENCODING)))  # every byte is ISO-8859-1: never fails
    if not records:
        return ResponseFile(header=(), answers=(), bad_lines=())
    _, header_cells, header_error = records[0]
    header = tuple(cell.strip() for cell in header_cells)
    missing = [column for column in INBOUND_HEADER if column not in header]
    if header_error or missing or len(set(header)) != len(header):
        why = (
            f"the header lacks {', '.join(missing)}"
            if missing and not header_error
            else "the first line must be the header " + SEPARATOR.join(INBOUND_HEADER)
        )
        return _all_bad(records[1:], "bad_header", why, header=header)
    answers: list[LineAnswer] = []
    bad: list[BadLine] = []
    for line, cells, error in records[1:]:
        if error is not None:
            bad.append(BadLine(line=line, cells=cells, reason=error[0], error=error[1]))
            continue
        read = _read_line(line, cells, header)
        if isinstance(read, LineAnswer):
            answers.append(read)
        else:
            bad.append(read)
    extra = set(header) - set(INBOUND_HEADER)
    return ResponseFile(
        header=header,
        answers=tuple(answers),
        bad_lines=tuple(bad),
        unknown_fields=safe_names(extra),
    )


def render_errors_file(result: ResponseFile) -> bytes:
    """`<name>.errors.csv`: the header with `ERREUR` added, then each bad line and its reason."""
    header = result.header or INBOUND_HEADER
    lines = [csv_line((*header, ERROR_COLUMN))]
    for bad in result.bad_lines:
        padding = ("",) * (len(header) - len(bad.cells))
        lines.append(csv_line((*bad.cells, *padding, bad.report)))
    return b"".join(lines)


_Record = tuple[int, tuple[str, ...], tuple[LineErrorReason, str] | None]


def _records(text: str) -> Iterable[_Record]:
    """(first line number, cells, error) for every non-blank record of the file."""
    physical = _NEWLINES.split(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=SEPARATOR, strict=True)
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            previous_end = max(reader.line_num, start)
            raw = tuple(physical[start - 1 : previous_end])
            yield start, raw, ("malformed_line", "the line's quotes do not follow RFC 4180")
            continue
        previous_end = reader.line_num
        if not cells or cells == [""]:
            continue
        row = tuple(cells)
        if any(_NOT_TEXT.search(cell) for cell in row):
            yield (
                start,
                row,
                (
                    "bad_encoding",
                    "the line holds control characters: is the file ISO-8859-1 text?",
                ),
            )
        elif any(len(cell) > _MAX_FIELD for cell in row):
            yield start, row, ("malformed_line", f"a cell is longer than {_MAX_FIELD} characters")
        else:
            yield start, row, None


def _all_bad(
    records: Sequence[_Record], reason: LineErrorReason, error: str, header: tuple[str, ...] = ()
) -> ResponseFile:
    bad = tuple(
        BadLine(line=line, cells=cells, reason=reason, error=error) for line, cells, _ in records
    )
    return ResponseFile(header=header, answers=(), bad_lines=bad)


def _read_line(line: int, cells: tuple[str, ...], header: tuple[str, ...]) -> LineAnswer | BadLine:
    def bad(reason: LineErrorReason, error: str) -> BadLine:
        return BadLine(line=line, cells=cells, reason=reason, error=error)

    if len(cells) != len(header):
        return bad("wrong_cell_count", f"{len(cells)} cells where the header has {len(header)}")
    row = {name: cells[i].strip() for i, name in enumerate(header)}
    reference = row["REFERENCE"]
    if not reference:
        return bad("schema_invalid", "REFERENCE is empty")
    if len(reference) > MAX_REFERENCE:
        return bad("schema_invalid", f"REFERENCE is longer than {MAX_REFERENCE} characters")
    status = STATUTS.get(row["STATUT"])
    if status is None:
        return bad(
            "unknown_status",
            f"STATUT {quoted_word(row['STATUT'])} is not one of {', '.join(STATUTS)}",
        )
    reported_at = _parse_date(row["DATE"])
    if reported_at is None:
        return bad("bad_date", "DATE must be JJ/MM/AAAA HH:MM (Europe/Paris time)")
    outcome: CompletionOutcome | None = None
    reason: RejectionReason | None = None
    motif = row["MOTIF"]
    if status == "completed":
        if not motif:
            return bad("schema_invalid", "STATUT TRAITE requires a MOTIF")
        outcome = MOTIFS_TRAITE.get(motif)
        if outcome is None:
            return bad(
                "unknown_outcome",
                f"MOTIF {quoted_word(motif)} is not one of {', '.join(MOTIFS_TRAITE)}",
            )
    elif status == "rejected":
        reason = MOTIFS_REFUS.get(motif, "other")
    answer = PartnerAnswer(
        reference=reference, status=status, reported_at=reported_at, outcome=outcome, reason=reason
    )
    return LineAnswer(line=line, cells=cells, answer=answer)


def _parse_date(text: str) -> datetime | None:
    match = _DATE.match(text)
    if not match:
        return None
    day, month, year, hour, minute = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, tzinfo=PARIS)
    except ValueError:
        return None


def _message_reason(
    reason: LineErrorReason,
) -> Literal["schema_invalid", "unknown_status", "unknown_outcome"]:
    if reason in ("unknown_status", "unknown_outcome"):
        return reason
    return "schema_invalid"


ADAPTER = EauGrandLyonAdapter()
