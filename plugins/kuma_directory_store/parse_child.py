"""A child process of :mod:`.bulk`: reads ``{"paths": [...], "limit": bytes}`` on stdin,
parses each file and writes the results, pickled, on stdout. Kept apart so that nothing else
imports it."""

from __future__ import annotations

import pickle
import sys

import orjson

from .bulk import parse_here


def main() -> None:
    job = orjson.loads(sys.stdin.buffer.read())
    results = parse_here(job["paths"], job["limit"])
    sys.stdout.buffer.write(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
