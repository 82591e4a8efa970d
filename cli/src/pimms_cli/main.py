"""The `pimms` command: dev, demo, trace, logs, inbox, dead-letters, docs, report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from pimms_servicekit.logging import configure_logging


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="pimms", description="The PIMMS referral platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    _dev_command(commands)
    docs = commands.add_parser("docs", help="serve the AsyncAPI documents on a local port")
    docs.add_argument("--port", type=int, default=8780, help="0: any free port (default 8780)")
    demo = commands.add_parser("demo", help="play a morning at a PIMMS site and check every case")
    demo.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the cases")
    trace = commands.add_parser("trace", help="the timeline of one case across the services")
    trace.add_argument("key", help="case reference, case id, submission id or referral id")
    trace.add_argument("--json", action="store_true", help="one JSON object per line")
    logs = commands.add_parser("logs", help="one case's log lines from every service, in order")
    logs.add_argument("key", help="case reference, case id or submission id")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    inbox = commands.add_parser("inbox", help="a mediator's notifications, newest first")
    inbox.add_argument("site", help="site id (lyon-8)")
    inbox.add_argument(
        "mediator", nargs="?", help="mediator id; every mediator of the site if omitted"
    )
    inbox.add_argument("--json", action="store_true", help="one JSON object per line")
    inbox.add_argument(
        "--source",
        choices=("auto", "files", "records"),
        default="auto",
        help="the embedded inbox's files, or the notifications service's records (its "
        "database); auto: the files when the data directory has the site's inbox",
    )
    _dead_letter_commands(commands)
    _report_command(commands)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `pimms trace X | head` ends quietly
    # The command's own log lines: warnings only, as JSON; a broker probe that fails is not news.
    configure_logging(service="pimms-cli", level="WARNING")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if args.command == "dev":
        from pimms_cli.dev import run_dev

        raise SystemExit(
            asyncio.run(
                run_dev(
                    instances=args.instances,
                    time_scale=args.time_scale,
                    time_start=args.time_start,
                    drain_timeout=args.drain_timeout,
                )
            )
        )
    if args.command == "docs":
        from pimms_cli.docs import run_docs

        raise SystemExit(run_docs(port=args.port))
    if args.command == "demo":
        from pimms_cli.demo import run_demo

        raise SystemExit(asyncio.run(run_demo(timeout=args.timeout)))
    if args.command == "trace":
        from pimms_cli.trace import run_trace

        raise SystemExit(asyncio.run(run_trace(args.key, as_json=args.json)))
    if args.command == "logs":
        from pimms_cli.logs import run_logs

        raise SystemExit(asyncio.run(run_logs(args.key, as_json=args.json, follow=args.follow)))
    if args.command == "inbox":
        from pimms_cli.inbox import run_inbox

        raise SystemExit(
            run_inbox(args.site, args.mediator, as_json_lines=args.json, source=args.source)
        )
    if args.command == "dead-letters":
        raise SystemExit(asyncio.run(_run_dead_letters(args)))
    if args.command == "report":
        from pimms_cli.report import ReportOptions, run_report

        options = ReportOptions(
            year=args.year,
            site=args.site,
            partner=args.partner,
            format=args.format,
            out=args.out,
            rebuild=args.rebuild,
        )
        raise SystemExit(asyncio.run(run_report(options)))


def _report_command(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="the yearly partnership review (CSV, HTML or JSON), per site and partner"
    )
    report.add_argument("--year", type=int, required=True, help="the year reviewed, e.g. 2026")
    report.add_argument("--site", help="one PIMMS site only, e.g. lyon-8")
    report.add_argument(
        "--partner", help="one partner's figures only, ready to send to it (small counts hidden)"
    )
    report.add_argument("--format", choices=("csv", "html", "json"), default="html")
    report.add_argument("--out", type=Path, help="directory to write to (default: .pimms/reports)")
    report.add_argument(
        "--rebuild",
        action="store_true",
        help="first replay the topics from their start into fresh reporting tables",
    )


def _dev_command(commands: Any) -> None:
    dev = commands.add_parser(
        "dev", help="run the platform here (embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set)"
    )
    dev.add_argument("--instances", type=int, default=1, help="instances of each service")
    dev.add_argument("--time-scale", type=float, help="platform time runs N times faster")
    dev.add_argument("--time-start", help="platform time at start, ISO-8601 with offset")
    dev.add_argument(
        "--drain-timeout", type=float, default=15.0, help="seconds to drain at Ctrl-C (15)"
    )


def _dead_letter_commands(commands: Any) -> None:
    group = commands.add_parser("dead-letters", help="read, show and replay dead letters")
    actions = group.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="a table of dead letters (every *.dlt topic)")
    listing.add_argument("--topic", help="original or dead letter topic")
    listing.add_argument("--reason", help="reason code, e.g. unknown_status")
    listing.add_argument("--since", help="30m, 2h, 7d or a date (2026-11-27T09:00)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one dead letter, personal data masked")
    show.add_argument("id", help="<dlt topic>:<partition>:<offset>, as `list` shows")
    replay = actions.add_parser("replay", help="re-publish to the original topic, marked")
    replay.add_argument("ids", nargs="*", help="dead letter ids")
    replay.add_argument("--topic", help="every dead letter of this topic (not replayed yet)")
    replay.add_argument("--reason", help="every dead letter with this reason (not replayed yet)")
    replay.add_argument("--again", action="store_true", help="include those already replayed")


async def _run_dead_letters(args: argparse.Namespace) -> int:
    from pimms_cli import deadletter_commands as dlt

    if args.action == "list":
        return await dlt.run_list(
            topic=args.topic, reason=args.reason, since=args.since, as_json=args.json
        )
    if args.action == "show":
        return await dlt.run_show(args.id)
    return await dlt.run_replay(args.ids, topic=args.topic, reason=args.reason, again=args.again)


if __name__ == "__main__":
    main()
