"""Schemathesis hooks for .ci/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

One narrow exception, and nothing else:

`per_page` and `page` are documented with a maximum (100 and 1000000), which is what a
client may ask for, but the server clamps a larger value to the maximum and says so in the
answer (`"per_page": 100`) instead of refusing it: a deliberate leniency (src/pagination.rs,
tested by tests/api/catalog.rs). The negative_data_rejection check counts that 200 as
"schema-violating request accepted". Such a failure is dropped only when all of these hold:

- it is that check's failure (ST201), on a GET answered 200;
- `page` and/or `per_page` in the request is a whole number above its maximum, and the
  answer echoes the maximum for each of them (the server clamped them);
- every query parameter sent is one the operation documents (so nothing else unknown was
  let through; the server validates the documented ones and answered 200).

Any other negative-data failure, on these parameters or elsewhere, still fails the run.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData

# What src/pagination.rs clamps to.
CLAMPED = {"page": 1_000_000, "per_page": 100}


def _requested(case, name: str) -> int | None:
    raw = (case.query or {}).get(name)
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if isinstance(raw, bool):
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        return None


def _answered(response, name: str) -> int | None:
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """False drops the failure: only a clamped `page` or `per_page` above its maximum."""
    if not isinstance(failure, AcceptedNegativeData) or response.status_code != 200:
        return True
    if str(case.method).upper() != "GET":
        return True
    clamped = [
        name
        for name, maximum in CLAMPED.items()
        if (requested := _requested(case, name)) is not None and requested > maximum
    ]
    if not clamped:
        return True
    if any(_answered(response, name) != CLAMPED[name] for name in clamped):
        return True
    documented = {parameter.name for parameter in case.operation.query}
    return not set(case.query or {}) <= documented
