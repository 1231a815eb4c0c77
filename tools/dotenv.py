"""`just dotenv`: write .env from .env.example with a fresh random value for every secret.

The result serves both ways of running the service: `just up` (docker-compose.yml requires
each of these secrets and runs the app in production) and `just dev` (which chooses
development itself; the URLs point at this machine's services). It refuses to replace an
existing .env unless asked (--force), because the stack's volumes keep the passwords they were
first started with (PostgreSQL's owner, RabbitMQ's administrator): after --force, start them
afresh with `docker compose down -v`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tools.docker.policy import with_random_secrets
from tools.harness.names import ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--output", type=Path, default=ROOT / ".env", help="default: .env")
    args = parser.parse_args()
    target: Path = args.output
    if target.exists() and not args.force:
        print(
            f"{target} exists; left as it is. `just dotenv --force` replaces it with new"
            " secrets (then `docker compose down -v`: the volumes keep the old passwords)."
        )
        return 1
    text = with_random_secrets((ROOT / ".env.example").read_text(encoding="utf-8"))
    # Created 0600: nobody else on the machine reads these secrets.
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(target, 0o600)  # also when --force replaced an older, wider file
    print(f"wrote {target} with random secrets (mode 0600); it is git-ignored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
