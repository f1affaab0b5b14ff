"""A minimal syslog collector for benchmarks: counts RFC 6587 octet-counted frames, nothing more.

    python -m bench._sink PORT TARGET

Listens on 127.0.0.1:PORT, prints ``ready`` once listening, then, once
TARGET frames have arrived (over any number of connections), one JSON line
``{"first": t, "last": t, "frames": n}`` (wall-clock times of the first and
the TARGET-th frame) and exits. The ceiling a collector can give: no
parsing, no disk.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def main() -> int:
    port, target = int(sys.argv[1]), int(sys.argv[2])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    print("ready", flush=True)
    frames = 0
    first = 0.0
    while frames < target:
        conn, _ = srv.accept()
        buf = b""
        with conn:
            while frames < target:
                data = conn.recv(1 << 20)
                if not data:
                    break
                if not first:
                    first = time.time()
                buf += data
                pos = 0
                while True:
                    sp = buf.find(b" ", pos, pos + 12)
                    if sp < 0:
                        break
                    end = sp + 1 + int(buf[pos:sp])
                    if end > len(buf):
                        break
                    frames += 1
                    pos = end
                buf = buf[pos:]
    print(json.dumps({"first": first, "last": time.time(), "frames": frames}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
