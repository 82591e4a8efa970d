"""The `pimms` command: dev, demo, trace, logs, inbox, dead-letters."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from pimms_servicekit.logging import configure_logging

from pimms_cli.config import configured_bootstrap, data_dir


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="pimms", description="The PIMMS referral platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "dev",
        help="run the platform here (embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set)",
    )
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
    _dead_letter_commands(commands)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `pimms trace X | head` ends quietly
    # The command's own log lines: warnings only, as JSON; a broker probe that fails is not news.
    configure_logging(service="pimms-cli", level="WARNING")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if args.command == "dev":
        raise SystemExit(asyncio.run(run_dev()))
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

        raise SystemExit(run_inbox(args.site, args.mediator, as_json_lines=args.json))
    if args.command == "dead-letters":
        raise SystemExit(asyncio.run(_run_dead_letters(args)))


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


async def run_dev() -> int:
    """Run until Ctrl-C or SIGTERM, then stop everything cleanly."""
    from pimms_cli.platform import Platform

    platform = Platform(data_dir=data_dir(), bootstrap=configured_bootstrap())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await platform.start()
        await platform.wait_ready()
        print(
            f"platform ready: Kafka at {platform.bootstrap_servers}, data in {platform.data_dir}; "
            "Ctrl-C stops it",
            flush=True,
        )
        supervisor = asyncio.create_task(platform.supervise())
        await stop.wait()
        supervisor.cancel()
    except RuntimeError as exc:
        print(f"pimms dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await platform.stop()
    return 0


if __name__ == "__main__":
    main()
