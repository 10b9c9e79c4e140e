#!/usr/bin/python3
"""stdin/stdout <-> WebSocket binary messages, as an OpenSSH ProxyCommand (test tool).

An independent stand-in for `ferry connect` (python3-websockets): lets the relay tests run
OpenSSH as an agent before, and besides, our own bridge.
Usage: ws_stdio_bridge.py ws://HOST:PORT/tunnel TOKEN_FILE
"""
import asyncio
import os
import sys

import websockets


async def main(url, token_file):
    with open(token_file) as f:
        token = f.read().strip()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer
    async with websockets.connect(url, extra_headers={"Authorization": "Bearer " + token},
                                  max_size=None, compression=None, ping_interval=None) as ws:
        async def up():
            while True:
                data = await reader.read(65536)
                if not data:
                    await ws.close(1000)
                    return
                await ws.send(data)

        async def down():
            async for msg in ws:
                out.write(msg if isinstance(msg, bytes) else msg.encode())
                out.flush()

        t_up = asyncio.ensure_future(up())
        try:
            await down()
        finally:
            t_up.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    except (websockets.exceptions.ConnectionClosed, BrokenPipeError, ConnectionError) as e:
        print(f"ws_stdio_bridge: {e}", file=sys.stderr)
        os._exit(1)
    except websockets.exceptions.InvalidStatusCode as e:
        print(f"ws_stdio_bridge: relay refused the upgrade: {e}", file=sys.stderr)
        os._exit(1)
