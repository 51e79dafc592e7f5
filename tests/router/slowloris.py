"""A slowloris attacker, run as its own process: ``python -m tests.router.slowloris PORT N SECONDS``.

Each of N sockets sends a request head that never ends (a header line every 0.3 s) and connects again
at once when the server closes it, for SECONDS; then the counts are printed as JSON. It only connects
to 127.0.0.1, from ``--source`` (another loopback address such as 127.0.0.2 gives the attacker its
own range of ports, as another host would have). It raises its open-file limit to the hard one; N
must fit in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource


class Counts:
    def __init__(self) -> None:
        self.connects = 0
        self.failed_connects = 0
        self.closed_by_server = 0
        self.held = 0


async def _socket(port: int, source: str | None, stop: asyncio.Event, counts: Counts) -> None:
    local = None if source is None else (source, 0)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
        except OSError:
            counts.failed_connects += 1
            await asyncio.sleep(0.2)
            continue
        counts.connects += 1
        counts.held += 1
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(4096), 0.3)
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                    continue
                if not data:
                    counts.closed_by_server += 1
                    break
        except OSError:
            counts.closed_by_server += 1
        finally:
            counts.held -= 1
            writer.close()


async def attack(port: int, connections: int, seconds: float, source: str | None = None) -> Counts:
    """Hold ``connections`` slowloris sockets against 127.0.0.1:``port`` for ``seconds``."""
    if source is not None and not source.startswith("127."):
        raise ValueError("--source must be a loopback address")
    counts = Counts()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_socket(port, source, stop, counts)) for _ in range(connections)]
    await asyncio.sleep(seconds)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--source", help="loopback address to connect from, e.g. 127.0.0.2")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = asyncio.run(attack(args.port, args.connections, args.seconds, args.source))
    print(json.dumps(vars(counts)), flush=True)


if __name__ == "__main__":
    main()
