"""Ports chosen for a process started later stay out of the kernel's ephemeral range, where any
outgoing connection could take them before that process binds them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pimms_servicekit import tansu
from pimms_servicekit.tansu import LOWEST_CHOSEN_PORT, free_port


def test_a_chosen_port_is_bindable_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert all(LOWEST_CHOSEN_PORT <= port < low for port in ports)
    assert len(ports) > 40  # spread over the range, not one port handed out again and again
    for port in list(ports)[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        # only two ports to choose from: the busy one and the next
        monkeypatch.setattr(tansu, "LOWEST_CHOSEN_PORT", busy)
        monkeypatch.setattr(tansu, "_ephemeral_low", lambda: busy + 2)
        assert {tansu.free_port() for _ in range(50)} == {busy + 1}
