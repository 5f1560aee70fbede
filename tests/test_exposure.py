"""Parsing the kernel's TCP socket tables into listening ports and addresses."""

from __future__ import annotations

import sys

import pytest

from pytest_stackcheck.probes.exposure import Listener, listening_sockets

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue\n"

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="the sample tables are from a little-endian host"
)


def test_tables_decode_to_ports_and_addresses(tmp_path):
    tcp = tmp_path / "tcp"
    tcp6 = tmp_path / "tcp6"
    tcp.write_text(
        HEADER
        + "   0: 0100007F:1F90 00000000:0000 0A 0 0\n"
        + "   1: 00000000:0050 00000000:0000 0A 0 0\n"
        # An established connection is not a listener.
        + "   2: 0100007F:1F91 0100007F:C350 01 0 0\n"
    )
    tcp6.write_text(
        HEADER
        + "   0: 00000000000000000000000001000000:1F90 "
        + "00000000000000000000000000000000:0000 0A 0 0\n"
        + "   1: 0000000000000000FFFF00000100007F:0BB8 "
        + "00000000000000000000000000000000:0000 0A 0 0\n"
    )

    found = listening_sockets((tcp, tcp6))

    assert found == {
        8080: {"127.0.0.1", "::1"},
        80: {"0.0.0.0"},
        3000: {"::ffff:7f00:1"},
    }


def test_only_non_loopback_addresses_are_exposed():
    listener = Listener("nats", 4222, ("127.0.0.1", "::1", "::ffff:127.0.0.1", "::"))

    assert listener.exposed == ("::",)


def test_missing_table_is_skipped(tmp_path):
    assert listening_sockets((tmp_path / "absent",)) == {}
