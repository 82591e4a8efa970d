"""Prometheus metrics of one service (its own registry), counted after commits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The `pimms_*` metrics every service exposes on `/metrics`."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter(
            "pimms_messages_consumed", "Messages consumed and committed", ["topic"], registry=r
        )
        self.duplicates = Counter(
            "pimms_messages_duplicate",
            "Redelivered messages skipped (inbox)",
            ["topic"],
            registry=r,
        )
        self.produced = Counter(
            "pimms_messages_produced",
            "Messages published by the outbox relay",
            ["topic"],
            registry=r,
        )
        self.failed = Counter(
            "pimms_messages_failed",
            "Messages whose handling failed (isolated)",
            ["topic"],
            registry=r,
        )
        self.dead_letters = Counter(
            "pimms_dead_letters", "Messages dead-lettered", ["topic", "reason"], registry=r
        )
        self.batch_size = Histogram(
            "pimms_batch_size",
            "Records per consumed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "pimms_batch_seconds",
            "Time to process and commit one batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "pimms_outbox_backlog", "Outbox rows not yet published", registry=r
        )
        self.outbox_age = Gauge(
            "pimms_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row",
            registry=r,
        )
        self.effects = Counter(
            "pimms_effects", "Effects delivered or failed", ["destination", "outcome"], registry=r
        )
        self.effects_backlog = Gauge(
            "pimms_effects_backlog", "Effects waiting for delivery", ["destination"], registry=r
        )
        self.consumer_lag = Gauge(
            "pimms_consumer_lag",
            "Records behind the partition end",
            ["topic", "partition"],
            registry=r,
        )
        self._lag_labels: set[tuple[str, str]] = set()
        self.ready = Gauge("pimms_ready", "1 when the service is ready", registry=r)
        self.info = Gauge("pimms_service_info", "The service", ["service"], registry=r)
        self.info.labels(service=service).set(1)

    async def read_consumer_lag(self, consumer: Any) -> None:
        """Set `pimms_consumer_lag` for the partitions `consumer` (aiokafka's) has now; the
        partitions it lost in a rebalance (or all, when it is gone) lose their series, so a
        dashboard never shows the frozen lag of a partition another instance now reads."""
        assigned: set[tuple[str, str]] = set()
        for tp in consumer.assignment() if consumer is not None else ():
            labels = (tp.topic, str(tp.partition))
            assigned.add(labels)
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # not fetched yet: the last value, if any, stays
            with contextlib.suppress(Exception):
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
                self.consumer_lag.labels(*labels).set(max(highwater - position, 0))
                self._lag_labels.add(labels)
        for labels in self._lag_labels - assigned:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(*labels)
        self._lag_labels &= assigned
