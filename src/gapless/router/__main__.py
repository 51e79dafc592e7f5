"""``python -m gapless.router``: the command line of the router process the control plane starts."""

from __future__ import annotations

import argparse
import sys

from gapless.router.process import run
from gapless.router.supervisor import EXIT_BIND, BindError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gapless.router", description="gapless's built-in router")
    parser.add_argument(
        "--name", required=True, help="rollout name; the process is titled 'gapless router NAME'"
    )
    parser.add_argument("--listen", required=True, help="public address HOST:PORT")
    parser.add_argument("--admin-socket", required=True, help="path of the admin API's unix socket")
    parser.add_argument("--token-file", required=True, help="file holding the admin bearer token")
    parser.add_argument("--config-file", required=True, help="where the last config is saved and loaded from")
    args = parser.parse_args(argv)
    try:
        code = run(args.name, args.listen, args.admin_socket, args.token_file, args.config_file)
    except BindError as exc:
        # The last line of the router's log: the control plane quotes it (address already in use).
        parser.exit(EXIT_BIND, f"gapless router {args.name}: {exc.strerror}\n")
    except (OSError, ValueError) as exc:
        # A missing token file or a bad --listen: say so without a traceback.
        parser.exit(1, f"gapless router {args.name}: {exc}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
