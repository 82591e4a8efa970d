"""Settings shared by every service: broker, database, data directory, logs.

Each service subclasses `ServiceSettings` with its own env prefix (`PIMMS_INTAKE_`, ...). Shared
infrastructure variables (`KAFKA_BOOTSTRAP_SERVERS`, `PIMMS_DATA_DIR`) have no prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# Each service's default HTTP port (`PIMMS_<SERVICE>_HTTP_PORT` overrides it).
HTTP_PORTS = {
    "partner-gateways": 8700,
    "intake": 8701,
    "referrals": 8702,
    "notifications": 8703,
    "reporting": 8704,
}


class SettingsError(RuntimeError):
    """A setting is wrong; the message names the environment variable."""


class ServiceSettings(BaseSettings):
    """What every service needs to run."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)
    service_name: ClassVar[str] = "service"

    data_dir: Path = Field(
        default=Path(".pimms"), validation_alias=AliasChoices("PIMMS_DATA_DIR", "data_dir")
    )
    database_url: str | None = None

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    # Tansu rejects idempotent producers: off for the embedded broker, on for Apache Kafka.
    kafka_enable_idempotence: bool = Field(
        default=False,
        validation_alias=AliasChoices("KAFKA_ENABLE_IDEMPOTENCE", "kafka_enable_idempotence"),
    )
    kafka_session_timeout_ms: int = Field(
        default=6000,
        ge=1000,
        validation_alias=AliasChoices("KAFKA_SESSION_TIMEOUT_MS", "kafka_session_timeout_ms"),
    )
    kafka_heartbeat_interval_ms: int = Field(
        default=1000,
        ge=100,
        validation_alias=AliasChoices("KAFKA_HEARTBEAT_INTERVAL_MS", "kafka_heartbeat_interval_ms"),
    )
    # A consumer's requests (fetch, commit, join, leave) give up after this. aiokafka's 40 s made a
    # stop hang on a LeaveGroup the embedded broker never answered; the member then expires anyway.
    kafka_request_timeout_ms: int = Field(
        default=15_000,
        ge=1000,
        validation_alias=AliasChoices("KAFKA_REQUEST_TIMEOUT_MS", "kafka_request_timeout_ms"),
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=50,
        ge=0,
        validation_alias=AliasChoices("KAFKA_FETCH_MAX_WAIT_MS", "kafka_fetch_max_wait_ms"),
    )
    # The most a fetch brings back (all partitions for Apache Kafka; each partition for Tansu,
    # which ignores the per-partition limit). Fetched records wait in the consumer's memory until
    # their batch: with aiokafka's 50 MB, Tansu answered 5 MB per partition, 40 MB for a service
    # reading two topics, so a backlog showed as RSS. 1 MB still left partner-gateways (it reads
    # the referrals and every partner's answers) at 220 MB at the end of a 100,000-need drain on
    # SQLite, its answers' partitions all behind; 256 KB: 180 MB, at 284-286 needs/s against 291.
    # A batch is at most 500 records (~0.6 MB): a poll gathers them from several partitions.
    kafka_fetch_max_bytes: int = Field(
        default=256 * 1024,
        ge=64 * 1024,
        validation_alias=AliasChoices("KAFKA_FETCH_MAX_BYTES", "kafka_fetch_max_bytes"),
    )
    kafka_topic_partitions: int = Field(
        default=4,
        ge=1,
        validation_alias=AliasChoices("KAFKA_TOPIC_PARTITIONS", "kafka_topic_partitions"),
    )
    kafka_replication_factor: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR", "kafka_replication_factor"),
    )

    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    # How long an idle poll waits for a first record before it polls again. A record is taken
    # the moment it is fetched and a batch never waits to fill (`kafka.PromptBatchSubscriber`):
    # this only sets how often an idle consumer wakes.
    batch_timeout_ms: int = Field(default=500, ge=1)
    relay_batch_size: int = Field(default=1000, ge=1)
    relay_poll_interval_s: float = Field(default=0.2, gt=0)

    # Health, metrics and the service's own endpoints. Unset: the service's default port
    # (HTTP_PORTS); if that one is taken, any free port (said in the log and the heartbeat file).
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, ge=0, le=65535)
    ready_max_outbox_backlog: int = Field(default=50_000, ge=1)

    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("PIMMS_LOG_LEVEL", "log_level")
    )

    def resolved_http_port(self) -> tuple[int, bool]:
        """The port to listen on, and whether it was chosen explicitly."""
        if self.http_port is not None:
            return self.http_port, True
        return HTTP_PORTS.get(self.service_name, 0), False

    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file per service under the data directory."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{self.service_name}.db").resolve()
        return f"sqlite+aiosqlite:///{path}"

    @classmethod
    def load(cls) -> Self:
        """Read the environment; raise SettingsError naming each wrong variable."""
        try:
            return cls()
        except ValidationError as exc:
            prefix = cls.model_config.get("env_prefix", "")
            problems = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "?"
                variable = field if field.isupper() else f"{prefix}{field}".upper()
                problems.append(f"{variable}: {error['msg']}")
            raise SettingsError(f"{cls.__name__}: " + "; ".join(problems)) from None
