"""A websocket handshake probe that reports exactly what came back.

A client library would hide the interesting failures (a 200 or 400 instead of
101, a missing accept header), so this probe speaks the RFC 6455 handshake
over a plain socket and decodes the first server frame itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The sample key from RFC 6455 section 1.3 and the accept value it must yield.
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def expected_accept(key: str) -> str:
    """Return the Sec-WebSocket-Accept value a server must send for ``key``."""
    digest = hashlib.sha1((key + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class Handshake:
    """The server's answer to a websocket upgrade request."""

    url: str
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    first_frame: bytes = b""
    error: str = ""

    @property
    def accept_ok(self) -> bool:
        return self.headers.get("sec-websocket-accept") == expected_accept(SAMPLE_KEY)

    def describe(self) -> str:
        """Return the answer as one line for failure messages."""
        frame = self.first_frame[:60].decode("utf-8", errors="replace")
        accept = self.headers.get("sec-websocket-accept", "<absent>")
        return (
            f"GET {self.url} (Upgrade: websocket) -> {self.status} {self.reason}, "
            f"Sec-WebSocket-Accept {accept}, first frame {frame!r}"
            + (f", error {self.error}" if self.error else "")
        )


def handshake(url: str, timeout_s: float = 5.0, host_header: str = "") -> Handshake:
    """Send a websocket upgrade to ``url`` and read the reply and first frame.

    ``host_header`` replaces the Host header, which otherwise names the
    address and port of ``url``.
    """
    answer, connection = open_websocket(url, timeout_s, host_header)
    if connection is not None:
        connection.close()
    return answer


def open_websocket(
    url: str, timeout_s: float = 5.0, host_header: str = ""
) -> tuple[Handshake, Connection | None]:
    """Upgrade ``url`` to a websocket and keep it open if the upgrade succeeded.

    Returns the response with the first frame, and the open connection, or
    None when the status was not 101 or the first frame did not arrive.
    The caller closes the connection.
    """
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query

    request = (
        f"GET {target} HTTP/1.1\r\n"
        f"Host: {host_header or f'{host}:{port}'}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")

    sock = socket.create_connection((host, port), timeout=timeout_s)
    if secure:
        sock = _wrap_tls(sock, urlsplit(f"//{host_header}").hostname or host)
    try:
        sock.sendall(request)
        head, rest = _read_head(sock)
        status, reason, headers = _parse_head(head)
        if status != 101:
            sock.close()
            return Handshake(url, status, reason, headers, rest[:200]), None
        connection = Connection(sock, rest)
        try:
            frame = connection.read_frame()
        except (OSError, ValueError) as exc:
            sock.close()
            return Handshake(url, status, reason, headers, b"", str(exc)), None
        return Handshake(url, status, reason, headers, frame), connection
    except BaseException:
        sock.close()
        raise


def _wrap_tls(sock: socket.socket, server_name: str) -> ssl.SSLSocket:
    # The TLS checks judge the certificate; this probe judges the upgrade.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return context.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


class Connection:
    """An open websocket as a client sees it: masked frames out, frames in."""

    def __init__(self, sock: socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self._buffer = buffer

    def send(self, payload: bytes) -> None:
        """Send ``payload`` as one binary frame, masked as clients must."""
        mask = os.urandom(4)
        if len(payload) < 126:
            header = bytes([0x82, 0x80 | len(payload)])
        elif len(payload) < 65536:
            header = bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        else:
            header = bytes([0x82, 0x80 | 127]) + len(payload).to_bytes(8, "big")
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_frame(self) -> bytes:
        """Return the payload of the next frame (at most 64 KiB of it).

        Raises ``ValueError`` when the peer closes the connection.
        """
        header = self._need(2)
        length = header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(self._need(2), "big")
        elif length == 127:
            length = int.from_bytes(self._need(8), "big")
        if header[1] & 0x80:
            self._need(4)  # servers must not mask, but skip a mask key if sent
        payload = self._need(length)
        return payload[:65536]

    def close(self) -> None:
        self.sock.close()

    def _need(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ValueError("connection closed inside a frame")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > 65536:
            raise ValueError("response head larger than 64 KiB")
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        return 0, f"unparsable status line {lines[0]!r}", {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    reason = status_line[2] if len(status_line) > 2 else ""
    return int(status_line[1]), reason, headers
