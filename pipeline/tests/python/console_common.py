"""What the console's browser checks share: sending events through the HTTP API, reading a
number as the page formats it, and checking that a page fits a screen's width."""

import base64
import json
import urllib.request


def post_batch(base, write_key, events):
    """Sends `events` through /v1/batch with the write key; returns how many were accepted."""
    body = json.dumps({"batch": events}).encode()
    request = urllib.request.Request(f"{base}/v1/batch", data=body, method="POST")
    request.add_header("content-type", "application/json")
    request.add_header("authorization", "Basic " + base64.b64encode(f"{write_key}:".encode()).decode())
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["accepted"]


def count(text):
    """A number as the page writes it (with group separators)."""
    return int(text.replace(",", "").replace("\u202f", "").replace("\xa0", ""))


def assert_fits(page, width, what):
    """Waits (10 s at most) for nothing on the page to be wider than `width`."""
    try:
        page.wait_for_function(f"document.documentElement.scrollWidth <= {width}", timeout=10_000)
    except Exception:
        wide = page.evaluate("document.documentElement.scrollWidth")
        raise AssertionError(f"{what} stays {wide} px wide at {width}")
