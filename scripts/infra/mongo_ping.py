#!/usr/bin/env python3
"""Send one MongoDB OP_MSG ``{ping: 1, $db: "admin"}`` and exit 0 only if the reply has ``ok: 1``.

Standard library only (the probe runs before any Python dependency is installed). FerretDB's ping
also checks its backend (PostgreSQL or SQLite), so a pass means the whole chain answers.

Usage: mongo_ping.py [HOST] [PORT] [--timeout SECONDS] [--quiet]
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

OP_MSG = 2013


def _cstring(s: str) -> bytes:
    return s.encode() + b"\x00"


def _bson(fields: dict[str, int | str]) -> bytes:
    body = b""
    for key, value in fields.items():
        if isinstance(value, int):
            body += b"\x10" + _cstring(key) + struct.pack("<i", value)
        else:
            raw = value.encode() + b"\x00"
            body += b"\x02" + _cstring(key) + struct.pack("<i", len(raw)) + raw
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _top_level(doc: bytes) -> dict[str, object]:
    """Decode the scalar top-level fields of a BSON document; stops at the first unknown type."""
    out: dict[str, object] = {}
    pos, end = 4, struct.unpack_from("<i", doc)[0] - 1
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name, pos = doc[pos + 1 : name_end].decode(), name_end + 1
        if kind == 0x01:  # double
            out[name], pos = struct.unpack_from("<d", doc, pos)[0], pos + 8
        elif kind == 0x02:  # string
            n = struct.unpack_from("<i", doc, pos)[0]
            out[name], pos = doc[pos + 4 : pos + 3 + n].decode(), pos + 4 + n
        elif kind in (0x03, 0x04):  # document / array: skip
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x08:  # bool
            out[name], pos = bool(doc[pos]), pos + 1
        elif kind == 0x10:  # int32
            out[name], pos = struct.unpack_from("<i", doc, pos)[0], pos + 4
        elif kind in (0x09, 0x11, 0x12):  # datetime, timestamp, int64
            out[name], pos = struct.unpack_from("<q", doc, pos)[0], pos + 8
        else:
            break
    return out


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def ping(host: str, port: int, timeout: float) -> dict[str, object]:
    payload = struct.pack("<I", 0) + b"\x00" + _bson({"ping": 1, "$db": "admin"})
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, OP_MSG)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(header + payload)
        length, _req_id, _resp_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        body = _recv_exact(sock, length - 16)
    if opcode != OP_MSG or body[4] != 0:
        raise ValueError(f"unexpected reply opcode={opcode} section kind={body[4]}")
    return _top_level(body[5:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host", nargs="?", default="127.0.0.1")
    parser.add_argument("port", nargs="?", type=int, default=27017)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    try:
        reply = ping(args.host, args.port, args.timeout)
    except (OSError, ValueError, struct.error) as exc:
        if not args.quiet:
            print(f"mongo ping {args.host}:{args.port} failed: {exc}", file=sys.stderr)
        return 1
    ok = reply.get("ok") == 1
    if not args.quiet:
        print(f"mongo ping {args.host}:{args.port}: {reply}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
