"""The partner directory: who serves what, where, how, and within which delays."""

from pimms_contracts.partners.directory import (
    DEFAULT_DIRECTORY_PATH,
    DIRECTORY_ENV,
    DirectoryError,
    DirectoryProblem,
    FileDropTransport,
    KafkaTransport,
    Partner,
    PartnerDirectory,
    WebhookTransport,
    directory_path,
    load_directory,
    parse_directory,
)
from pimms_contracts.partners.mapping import MAPPED_JSON, JsonMapping, ResponseMapping

__all__ = [
    "DEFAULT_DIRECTORY_PATH",
    "DIRECTORY_ENV",
    "MAPPED_JSON",
    "DirectoryError",
    "DirectoryProblem",
    "FileDropTransport",
    "JsonMapping",
    "KafkaTransport",
    "Partner",
    "PartnerDirectory",
    "ResponseMapping",
    "WebhookTransport",
    "directory_path",
    "load_directory",
    "parse_directory",
]
