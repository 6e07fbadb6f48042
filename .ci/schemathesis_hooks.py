"""Schemathesis hooks for .ci/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

1. Seeded ids for orders (`map_body`). A generated order names random medicine UUIDs, so
every one would stop at 422 "no such medicine" and the order path (reservation, storage,
dispatch) would never run. When the script seeded a pharmacy and medicines (environment
MEDIFY_ST_PHARMACY, MEDIFY_ST_MEDICINES), a POST /api/v1/orders body has each
`items[i].medicine_id` and its `pharmacy_id` that is a well-formed UUID replaced by a seeded
one, and gets the seeded `pharmacy_id` when it has none. Only values that were valid UUIDs
already are replaced, so negative data stays negative. Schemathesis applies this hook in
its fuzzing and stateful phases (not in the coverage phase).

2. One narrow exception to negative_data_rejection (`filter_failure`), and nothing else:

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
import os
import re

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData

_UUID = re.compile(r"\A[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")


def _is_uuid(value) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


@schemathesis.hook
def map_body(context, body):
    """POST /api/v1/orders: well-formed UUIDs become the seeded medicines and pharmacy."""
    operation = context.operation
    if operation is None or operation.method.upper() != "POST" or operation.path != "/api/v1/orders":
        return body
    medicines = [m for m in os.environ.get("MEDIFY_ST_MEDICINES", "").split(",") if m]
    pharmacy = os.environ.get("MEDIFY_ST_PHARMACY", "")
    if not medicines or not isinstance(body, dict):
        return body
    body = dict(body)
    items = body.get("items")
    if isinstance(items, list):
        new_items = []
        for i, item in enumerate(items):
            if isinstance(item, dict) and _is_uuid(item.get("medicine_id")):
                item = {**item, "medicine_id": medicines[i % len(medicines)]}
            new_items.append(item)
        body["items"] = new_items
    # Without a pharmacy_id the order goes to the nearest one within the service radius of
    # a random point, which is none (out_of_service_area); adding a valid optional field
    # keeps a valid body valid and an invalid one invalid.
    if pharmacy and ("pharmacy_id" not in body or _is_uuid(body.get("pharmacy_id"))):
        body["pharmacy_id"] = pharmacy
    return body


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
