"""`pimms dev`: the platform on this machine until Ctrl-C, then a graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from pimms_contracts.partners import load_directory

from pimms_cli.config import (
    configured_bootstrap,
    data_dir,
    describe_dev_secrets,
    dev_webhook_secrets,
    gateway_directory_path,
)
from pimms_cli.devtime import ClockSettingError, describe_time, time_environment

DEFAULT_DRAIN_SECONDS = 15.0


def stop_message(*, left_total: int, left_text: str, embedded: bool, timeout: float) -> str:
    """What `pimms dev` says when it stops: drained, or what was still in flight."""
    if left_total == 0 and "no answer" not in left_text:
        return "drained: nothing in flight; stopping"
    where = (
        "the outboxes keep their rows for the next start; records the embedded broker holds "
        "and no consumer read are lost with it"
        if embedded
        else "the broker and the outboxes keep them for the next start"
    )
    return f"stopping after {timeout:g}s of draining with {left_text} still in flight: {where}"


async def run_dev(
    *,
    instances: int = 1,
    time_scale: float | None = None,
    time_start: str | None = None,
    drain_timeout: float = DEFAULT_DRAIN_SECONDS,
) -> int:
    """Run until Ctrl-C or SIGTERM, drain for at most `drain_timeout` s, then stop cleanly."""
    from pimms_cli.platform import Platform

    try:
        clock_env = time_environment(
            scale=time_scale, start=time_start, environ=os.environ, now=time.time()
        )
    except ClockSettingError as exc:
        print(f"pimms dev: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        directory = load_directory(gateway_directory_path(os.environ))
    except ValueError as exc:
        print(f"pimms dev: {exc}", file=sys.stderr, flush=True)
        return 2
    # Webhook partners' secrets the user left unset get development values (theirs are kept),
    # so that the dev platform signs what it sends and checks what it is answered.
    secrets = dev_webhook_secrets(directory, os.environ)
    platform = Platform(
        data_dir=data_dir(),
        bootstrap=configured_bootstrap(),
        instances=instances,
        extra_env={**clock_env, **{s.variable: s.value for s in secrets}},
    )
    try:
        platform.check_instances()
    except RuntimeError as exc:
        print(f"pimms dev: {exc}", file=sys.stderr, flush=True)
        return 2
    print(describe_time(clock_env), flush=True)
    for line in describe_dev_secrets(secrets):
        print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ready = False
    try:
        await platform.start()
        await platform.wait_ready(timeout=180)  # a busy machine imports slowly
        ready = True
        for line in platform.describe_ports():
            print(line, flush=True)
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
        if ready:
            platform.stopping = True
            left = await platform.drain(drain_timeout)
            message = stop_message(
                left_total=left.total,
                left_text=left.describe(),
                embedded=platform.broker is not None,
                timeout=drain_timeout,
            )
            print(message, flush=True)
        await platform.stop()
    return 0
