"""The console in headless Chromium (Debian's, by path; Playwright downloads nothing): asks for
the API token, refuses a wrong one, shows the overview with the events the test sent, counts
more events sent while the page is open without a reload, keeps the token across a reload,
and is readable at a phone's width. Writes screenshots into the directory given.

Usage: console_check.py BASE_URL TOKEN WRITE_KEY EVENTS_SENT EVENTS_FILE SCREENSHOT_DIR
"""

import json
import os
import sys

from console_common import assert_fits, post_batch
from playwright.sync_api import expect, sync_playwright

base, token, write_key, sent, events_file, shots = sys.argv[1:7]
chromium = os.environ["JOURNEYFLOW_CHROMIUM"]
expect.set_options(timeout=30_000)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")
    # A token is configured: the page asks for it, and shows nothing without it.
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    assert page.locator("#events-in").count() == 0, "figures shown before the token"
    page.fill("#token", "wrong")
    page.keyboard.press("Enter")
    expect(page.locator("#token-error")).to_have_text("The token was not accepted.")
    page.fill("#token", token)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    # The overview: every event the test sent, in and processed; the stream is live.
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#events-in")).to_have_text(f"{int(sent):,}")
    expect(page.locator("#events-processed")).to_have_text(f"{int(sent):,}")
    expect(page.locator("#rates canvas")).to_have_count(1)
    # More events while the page is open: the count follows, without a reload.
    more = []
    for line in open(events_file):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the sample's bad records
        if isinstance(event, dict) and event.get("userId"):
            more.append(event)
    more = more[:50]
    for i, e in enumerate(more):
        e["messageId"] = f"console-more-{i}"
    accepted = post_batch(base, write_key, more)
    expect(page.locator("#events-in")).to_have_text(f"{int(sent) + accepted:,}")
    expect(page.locator("#in-rate")).not_to_have_text("–")
    page.screenshot(path=os.path.join(shots, "console-overview.png"), full_page=True)
    # A reload keeps the token for the tab: no question asked again.
    page.reload()
    expect(page.locator("#connection")).to_have_text("live")
    expect(dialog).to_be_hidden()
    # Keyboard: the first Tab reaches the skip link.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    # It moves the focus to the content and leaves the page where it is.
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    expect(page.locator("#events-in")).to_be_visible()
    assert page.evaluate("location.hash") in ("", "#overview"), page.evaluate("location.hash")
    # A phone's width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#events-in")).to_be_visible()
    assert_fits(page, 390, "the overview")
    page.screenshot(path=os.path.join(shots, "console-overview-phone.png"), full_page=True)
    assert not errors, f"errors in the page: {errors}"
    browser.close()
print("console: ok")
