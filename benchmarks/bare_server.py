"""The baseline: a bare aiohttp handler that reads the body and answers a fixed JSON body.

    python benchmarks/bare_server.py PORT BODY_FILE [content-type]
"""

import sys
from pathlib import Path

from aiohttp import web


def main() -> None:
    port, body = int(sys.argv[1]), Path(sys.argv[2]).read_bytes()
    content_type = sys.argv[3] if len(sys.argv) > 3 else "application/json"

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
