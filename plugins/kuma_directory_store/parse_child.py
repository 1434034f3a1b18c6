"""A child process of :mod:`.bulk`: reads the JSON list of paths on stdin, parses each file and
writes the results, pickled, on stdout. Kept apart so that nothing else imports it."""

from __future__ import annotations

import pickle
import sys

import orjson

from .bulk import parse_here


def main() -> None:
    paths = orjson.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(parse_here(paths), protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
