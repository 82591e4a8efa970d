"""A running notifications service takes a changed partner directory without restart.

Notifications reads the directory for one thing: the operator's name in what visitors and
mediators are told. The file is the platform's one directory (`PIMMS_PARTNER_DIRECTORY`); the
service's own job reloads it when it changes, and refuses a broken version with a warning while
the last good one stays.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pimms_contracts import topics
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, DIRECTORY_ENV
from pimms_contracts.v1.frontoffice import ContactConsent
from pimms_contracts.v1.internal import IntakeCaseOpened, SharedNeed, SharedVisitor
from pimms_contracts.v1.lifecycle import ReferralCompleted
from pimms_notifications.app import build_runtime, partner_directory
from pimms_notifications.channels.files import is_message_file
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.clock import SteeredClock
from pimms_servicekit.testing import KafkaEndpoint, event_message, produce
from structlog.testing import capture_logs

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
EDF_LINE = 'operator = "EDF"'


def write(path: Path, text: str, *, mtime: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))  # distinct mtimes, whatever the file system's resolution


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def case_opened(number: int) -> IntakeCaseOpened:
    return IntakeCaseOpened(
        case_id=uuid.uuid4(),
        case_reference=f"LYON8-2026-{number:06d}",
        submission_id=uuid.uuid4(),
        site_id="lyon-8",
        mediator_id="m-042",
        channel="front_desk",
        submitted_at=AT,
        opened_at=AT,
        visitor=SharedVisitor(
            first_name="Marie",
            last_name="Dupont",
            phone="+33612345678",
            email=None,
            postal_code="69008",
            language="en",
            contact_consent=ContactConsent(sms=True, email=False),
        ),
        need=SharedNeed(category="energy_bill", summary="Facture", urgency="high", documents=()),
    )


async def test_the_operator_name_follows_the_file_of_the_running_service(
    kafka: KafkaEndpoint, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    assert EDF_LINE in text
    path = tmp_path / "partners.toml"
    write(path, text, mtime=1_000_000_000_000_000_000)
    monkeypatch.delenv("PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY", raising=False)
    monkeypatch.setenv(DIRECTORY_ENV, str(path))
    settings = NotificationsSettings(
        data_dir=tmp_path,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        moment_window=timedelta(milliseconds=300),
        job_interval_s=0.05,
        directory_poll_interval_s=0.05,
    )
    assert settings.partner_directory == path
    directory = partner_directory(settings)
    clock = SteeredClock(AT, anchor=time.time(), scale=1.0)  # a morning: no SMS waits
    app = build_runtime(settings, clock=clock, directory=directory).build_app()
    sms_folder = tmp_path / "notifications" / "sms"
    seen: set[Path] = set()

    async def visitor_told(number: int) -> str:
        """One case completed by EDF: the SMS its visitor gets."""
        case = case_opened(number)
        completed = ReferralCompleted(
            case_id=case.case_id,
            case_reference=case.case_reference,
            site_id=case.site_id,
            occurred_at=AT,
            referral_id=uuid.uuid5(case.case_id, "edf"),
            partner_id="edf",
            outcome="resolved",
        )
        key = str(case.case_id)
        await produce(
            kafka.bootstrap_servers,
            [
                event_message(topics.INTAKE_CASES, case, key=key, source="urn:pimms:intake"),
                event_message(topics.CASES, completed, key=key, source="urn:pimms:referrals"),
            ],
        )

        def new_files() -> list[Path]:
            if not sms_folder.exists():
                return []
            # a file still being written has a temporary name: only finished ones count
            return [p for p in sms_folder.glob("*") if is_message_file(p) and p not in seen]

        await until(lambda: len(new_files()) == 1, f"the SMS of case {number}")
        [new] = new_files()
        seen.add(new)
        return new.read_text(encoding="utf-8")

    await app.start()
    try:
        assert "EDF has dealt with your request" in await visitor_told(601)

        write(
            path, text.replace(EDF_LINE, 'operator = "EDF Solidarité"'), mtime=1_000_000_001 * 10**9
        )
        await until(lambda: directory.reloads == 1, "the service reloading the file")
        assert "EDF Solidarité has dealt with your request" in await visitor_told(602)

        with capture_logs() as logs:
            write(path, text.replace(EDF_LINE, "operator = 42"), mtime=1_000_000_002 * 10**9)
            await until(lambda: directory.refused is not None, "the refusal")
        [refused] = [e for e in logs if e["event"] == "config.refused"]
        assert refused["log_level"] == "warning"
        assert "'edf'" in refused["error"]
        assert "operator" in refused["error"]
        assert "EDF Solidarité has dealt with your request" in await visitor_told(603)
    finally:
        await app.stop()
