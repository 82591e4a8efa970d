"""The partner directory: who serves what, where, how, and within which delays."""

from pimms_contracts.partners.directory import (
    DEFAULT_DIRECTORY_PATH,
    FileDropTransport,
    KafkaTransport,
    Partner,
    PartnerDirectory,
    WebhookTransport,
    load_directory,
)

__all__ = [
    "DEFAULT_DIRECTORY_PATH",
    "FileDropTransport",
    "KafkaTransport",
    "Partner",
    "PartnerDirectory",
    "WebhookTransport",
    "load_directory",
]
