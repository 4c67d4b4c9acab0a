"""The console's pages in headless Chromium (Debian's, by path; Playwright downloads nothing),
against a server holding the bundled sample: the segment list shows every segment with the
size the API reports, and a sparkline; a segment's page shows its definition, its size and its
members, searchable; a journey's page draws every node of J1 and J2 with the counts /stats
reports, and follows new events without a reload; pause and resume work from the page (and
the buttons the status forbids are disabled); a user's page shows their segments and journey;
the editor shows a validation error at its JSON path, previews a journey's graph as it is
typed, and installs a good definition, which then appears in the list; a funnel's page shows
the report's users at each step, drawn as bars, and follows new events; a cohort's page shows
the report's retention triangle and its curves; a path analysis's page draws the report's
Sankey diagram. Nothing breaks the
page's content security policy. Writes screenshots into the directory given.

Usage: console_pages_check.py BASE_URL TOKEN WRITE_KEY EVENTS_FILE SCREENSHOT_DIR
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

from console_common import assert_fits, count, post_batch
from playwright.sync_api import expect, sync_playwright

base, token, write_key, events_file, shots = sys.argv[1:6]
chromium = os.environ["JOURNEYFLOW_CHROMIUM"]
expect.set_options(timeout=30_000)
DEADLINE = 30.0


def api(path, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def quoted(text):
    return urllib.parse.quote(text, safe="")


def eventually(check, what):
    """Waits until `check()` returns a true value (within the deadline); returns it."""
    end = time.monotonic() + DEADLINE
    last = None
    while time.monotonic() < end:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, ValueError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {DEADLINE} s ({last})")


def segment_size(segment):
    return api(f"/v1/segments/{quoted(segment)}/members?limit=1")["total"]


sample = [json.loads(line) for line in open(events_file) if line.strip().startswith("{") and line.strip().endswith("}")]
latest = max(e["timestamp"] for e in sample if isinstance(e.get("timestamp"), int))

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    errors, policy = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: policy.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("dialog", lambda d: d.accept())
    page.goto(base + "/#segments")
    page.fill("#token", token)
    page.keyboard.press("Enter")
    expect(page.locator("#token-dialog")).to_be_hidden()

    # The segment list: every sample segment, with the size the API reports, and a sparkline.
    segments = [s["id"] for s in api("/v1/segments")]
    assert len(segments) == 6, segments
    for s in segments:
        row = page.locator(f'#segments tr[data-segment="{s}"]')
        eventually(lambda: count(row.locator(".size").inner_text()) == segment_size(s) or None,
                   f"segment {s}'s size on the page equals the API's")
        expect(row.locator(".spark canvas")).to_have_count(1)
    nav = page.locator('header nav a[data-section="segments"]')
    expect(nav).to_have_attribute("aria-current", "page")

    # A segment's page: definition, size, members (paged), a search by the start of an id.
    biggest = max(segments, key=segment_size)
    page.click(f'#segments tr[data-segment="{biggest}"] a')
    expect(page.locator("h1 .id")).to_have_text(biggest)
    expect(page.locator("#definition")).to_contain_text(f'"id": "{biggest}"')
    size = segment_size(biggest)
    expect(page.locator("#size")).to_have_text(f"{size:,}")
    expect(page.locator("#members li")).to_have_count(min(size, 50))
    expect(page.locator("#size-chart canvas")).to_have_count(1)
    page.screenshot(path=os.path.join(shots, "console-segment.png"), full_page=True)
    first = page.locator("#members li").first.inner_text()
    prefix = first[:2]
    page.fill("#member-prefix", prefix)
    page.click("#member-search button")
    with_prefix = api(f"/v1/segments/{quoted(biggest)}/members?limit=10000&prefix={quoted(prefix)}")
    expect(page.locator("#members-count")).to_contain_text(f"{with_prefix['total']:,} member(s) whose id starts with “{prefix}”")
    shown = page.locator("#members li").all_inner_texts()
    assert shown and all(u.startswith(prefix) for u in shown), shown

    # A journey's page draws every node, with the counts /stats reports.
    def graph_matches(journey):
        stats = api(f"/v1/journeys/{journey}/stats")
        for node, counts in stats["nodes"].items():
            shown = page.locator(f'#graph [data-node="{node}"] .node-counts')
            assert shown.count() == 1, f"node {node} is not drawn"
            pair = (int(shown.get_attribute("data-current")), int(shown.get_attribute("data-entered")))
            assert pair == (counts["current"], counts["entered"]), f"{journey}.{node}: {pair} on the page, {counts} reported"
            said = f"{counts['current']} finished" if counts["kind"] == "exit" else f"{counts['current']} here · {counts['entered']} passed"
            assert shown.text_content() == said, f"{journey}.{node} says {shown.text_content()!r}, not {said!r}"
        assert page.locator("#entered").inner_text() == f"{stats['entered']:,}", "entered"
        return stats

    for journey in ["j1_abandoned_cart", "j2_win_back"]:
        page.goto(f"{base}/#journeys/{journey}")
        definition = api(f"/v1/journeys/{journey}")["definition"]
        expect(page.locator("#graph [data-node]")).to_have_count(len(definition["nodes"]))
        for node in definition["nodes"]:
            expect(page.locator(f'#graph [data-node="{node}"]')).to_be_visible()
        eventually(lambda: graph_matches(journey), f"{journey}'s counts on the page equal /stats")
    expect(page.locator("#rules")).to_contain_text("Goal: performs Order Completed")
    page.screenshot(path=os.path.join(shots, "console-journey.png"), full_page=True)

    # New events while J1's page is open: its counts move without a reload.
    page.goto(f"{base}/#journeys/j1_abandoned_cart")
    before = eventually(lambda: graph_matches("j1_abandoned_cart"), "J1's counts before")
    page.evaluate("window.__unchanged = true")
    newcomers = [{"type": "track", "event": "Cart Viewed", "userId": f"console-new-{i}", "messageId": f"console-cart-{i}",
                  "timestamp": latest + 60_000 + i} for i in range(3)]
    assert post_batch(base, write_key, newcomers) == 3
    eventually(lambda: graph_matches("j1_abandoned_cart")["entered"] >= before["entered"] + 3,
               "J1's page shows the three new entries")
    assert page.evaluate("window.__unchanged") is True, "the page was reloaded"
    expect(page.locator("#transitions tbody")).to_contain_text("console-new-")

    # Pause and resume from the page; what the status forbids is disabled.
    expect(page.locator("#status")).to_have_text("ongoing")
    expect(page.locator('[data-action="resume"]')).to_be_disabled()
    page.click('[data-action="pause"]')
    expect(page.locator("#status")).to_have_text("paused")
    assert api("/v1/journeys/j1_abandoned_cart")["status"] == "paused"
    expect(page.locator('[data-action="pause"]')).to_be_disabled()
    page.click('[data-action="resume"]')
    expect(page.locator("#status")).to_have_text("ongoing")
    assert api("/v1/journeys/j1_abandoned_cart")["status"] == "ongoing"

    # A/B results: a split journey with a valued goal; its page shows each branch as /stats does.
    ab = {"id": "console_ab", "entry": {"event": "AB Visit"}, "goal": {"event": "AB Order", "value": "revenue"},
          "start": "s", "nodes": {
              "s": {"split": {"branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}]}},
              "a": {"wait": {"duration": "1d"}, "next": "e"}, "b": {"wait": {"duration": "1d"}, "next": "e"},
              "e": {"exit": {}}}}
    api("/v1/journeys", "POST", ab)
    published = api("/v1/journeys/console_ab/publish", "POST", {})["at"]
    start = max(latest, published) + 1
    visits = [{"type": "track", "event": "AB Visit", "userId": f"ab-{i}", "messageId": f"ab-visit-{i}",
               "timestamp": start + i} for i in range(12)]
    orders = [{"type": "track", "event": "AB Order", "userId": f"ab-{i}", "messageId": f"ab-order-{i}",
               "timestamp": start + 1_000 + i, "properties": {"revenue": i + 0.5}} for i in range(0, 12, 2)]
    assert post_batch(base, write_key, visits + orders) == 18
    page.goto(f"{base}/#journeys/console_ab")

    def splits_match():
        stats = api("/v1/journeys/console_ab/stats")
        if stats["converted"] < 6:
            return None
        rows = page.locator('table[data-split="s"] tbody tr')
        assert rows.count() == 2, "two branches"
        for b in stats["splits"]["s"]:
            cells = rows.nth(b["branch"]).locator("td").all_inner_texts()
            assert [count(cells[0]), count(cells[1])] == [b["entered"], b["converted"]], f"{cells} for {b}"
            assert (cells[3] == "–") == (b["interval_95"] is None), cells
        return stats

    stats = eventually(splits_match, "the split's branches on the page equal /stats")
    assert stats["converted_value"] == sum(i + 0.5 for i in range(0, 12, 2)), stats
    expect(page.locator("#converted-value")).to_have_text("33")
    expect(page.locator("#splits-section")).to_be_visible()

    # A user's page: the journey they are in, and their segments.
    page.goto(f"{base}/#users/console-new-0")
    expect(page.locator("#user-journeys")).to_contain_text("j1_abandoned_cart")
    member = api(f"/v1/segments/{quoted(biggest)}/members?limit=1")["members"][0]["user_id"]
    page.goto(f"{base}/#users/{quoted(member)}")
    expect(page.locator("#user-segments")).to_contain_text(biggest)
    expect(page.locator("#retained")).not_to_have_text("–")
    # Their recent events, newest first.
    times = page.locator("#user-events tbody tr td:first-child").all_inner_texts()
    assert len(times) > 1 and times == sorted(times, reverse=True), times

    # The editor: an error at its path, a journey previewed as typed, a good segment installed.
    page.goto(f"{base}/#editor/segment")
    page.fill("#definition-text", json.dumps({"id": "console_made", "condition": {"performed": {"event": "Order Completed", "within": "forever"}}}))
    error = page.locator("#validation li.error").first
    expect(error).to_have_attribute("data-path", "$.condition.performed.within")
    good = {"id": "console_made", "condition": {"performed": {"event": "Order Completed", "within": "30d"}}}
    page.fill("#definition-text", json.dumps(good))
    expect(page.locator("#validation li.ok")).to_have_text("Valid.")
    page.click("#save")
    expect(page.locator("h1 .id")).to_have_text("console_made")
    page.goto(f"{base}/#segments")
    expect(page.locator('#segments tr[data-segment="console_made"]')).to_be_visible()
    page.goto(f"{base}/#editor/journey")
    expect(page.locator("#preview [data-node]")).to_have_count(3)
    journey = {"id": "console_j", "entry": {"event": "Signed Up"}, "start": "a",
               "nodes": {"a": {"wait": {"duration": "1h"}, "next": "b"}, "b": {"split": {"branches": [
                   {"percent": 50, "next": "c"}, {"percent": 50, "next": "d"}]}},
                   "c": {"exit": {}}, "d": {"exit": {}}}}
    page.fill("#definition-text", json.dumps(journey))
    expect(page.locator("#preview [data-node]")).to_have_count(4)
    expect(page.locator("#validation li.ok")).to_have_text("Valid.")

    # A funnel: the list links it; its page shows each step's users as the report answers them,
    # draws them as bars, follows new events without a reload, and cuts the range into buckets.
    funnel = {"id": "console_funnel", "steps": [{"event": "Product Viewed"}, {"event": "Order Completed"}],
              "within": "7d", "breakdown": {"trait": "country"}}
    api("/v1/funnels", "POST", funnel)
    page.goto(f"{base}/#funnels")
    page.click('#funnels tr[data-funnel="console_funnel"] a')
    expect(page.locator("h1 .id")).to_have_text("console_funnel")
    since, until = "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"
    page.fill("#funnel-from", since)
    page.fill("#funnel-to", until)
    page.click("#funnel-range button")

    def funnel_matches():
        report = api(f"/v1/funnels/console_funnel/report?from={quoted(since)}&to={quoted(until)}")
        shown = [count(t) for t in page.locator("#funnel-total tbody tr .users").all_inner_texts()]
        wanted = [s["users"] for s in report["buckets"][0]["steps"]]
        assert shown == wanted, f"{shown} on the page, {wanted} reported"
        return report

    report = eventually(funnel_matches, "the funnel's steps on the page equal the report")
    assert report["buckets"][0]["steps"][1]["users"] > 0, report
    expect(page.locator("#funnel-chart canvas")).to_have_count(1)
    expect(page.locator("#funnel-buckets details h4").first).to_be_attached()
    page.screenshot(path=os.path.join(shots, "console-funnel.png"), full_page=True)
    page.evaluate("window.__unchanged = true")
    buyers = [e for i in range(2) for e in (
        {"type": "track", "event": "Product Viewed", "userId": f"console-buyer-{i}", "messageId": f"console-view-{i}",
         "timestamp": latest + 120_000 + i},
        {"type": "track", "event": "Order Completed", "userId": f"console-buyer-{i}", "messageId": f"console-buy-{i}",
         "timestamp": latest + 180_000 + i})]
    assert post_batch(base, write_key, buyers) == 4
    bought = report["buckets"][0]["steps"][1]["users"]
    eventually(lambda: funnel_matches()["buckets"][0]["steps"][1]["users"] == bought + 2,
               "the funnel's page shows the two new buyers")
    assert page.evaluate("window.__unchanged") is True, "the page was reloaded"
    page.select_option("#funnel-step", "7d")
    page.click("#funnel-range button")
    expect(page.locator("#funnel-buckets .bucket")).to_have_count(9)
    expect(page.locator("#funnel-buckets .bucket h3").first).to_contain_text("2024-01-01 00:00:00 UTC")

    # A retention cohort: the list links it; its page shows a triangle whose cohorts, users and
    # shares are the report's, and the curves.
    cohort = {"id": "console_cohort", "first": {"event": "Product Viewed"}, "return": {"event": "Order Completed"},
              "period": "7d", "periods": 4}
    api("/v1/cohorts", "POST", cohort)
    page.goto(f"{base}/#cohorts")
    page.click('#cohorts tr[data-cohort="console_cohort"] a')
    expect(page.locator("h1 .id")).to_have_text("console_cohort")
    page.fill("#cohort-from", since)
    page.fill("#cohort-to", until)
    page.click("#cohort-range button")

    def triangle_matches():
        report = api(f"/v1/cohorts/console_cohort/report?from={quoted(since)}&to={quoted(until)}&step=7d")
        wanted = [(str(c["start"]), c["users"], [p["retained"] for p in c["periods"]]) for c in report["cohorts"] if c["users"]]
        rows = page.locator("#triangle tbody tr")
        shown = [(rows.nth(i).get_attribute("data-start"), count(rows.nth(i).locator(".users").inner_text()),
                  [int(x) for x in rows.nth(i).locator("td.share").evaluate_all("cells => cells.map((c) => c.dataset.count)")])
                 for i in range(rows.count())]
        assert shown == wanted, f"{shown} on the page, {wanted} reported"
        return report

    report = eventually(triangle_matches, "the cohort's triangle equals the report")
    assert sum(c["users"] for c in report["cohorts"]) > 0, report
    expect(page.locator("#cohort-chart canvas")).to_have_count(1)
    page.screenshot(path=os.path.join(shots, "console-cohort.png"), full_page=True)

    # A path analysis: its page draws the top paths as a Sankey diagram whose links carry the
    # report's users, and lists the paths.
    api("/v1/paths", "POST", {"id": "console_paths", "start": {"event": "Cart Viewed"}, "depth": 3, "collapse": True,
                            "events": ["Product Viewed", "Cart Viewed", "Order Completed"]})
    page.goto(f"{base}/#paths")
    page.click('#paths tr[data-paths="console_paths"] a')
    expect(page.locator("h1 .id")).to_have_text("console_paths")
    page.fill("#paths-from", since)
    page.fill("#paths-to", until)
    page.click("#paths-range button")

    def sankey_matches():
        report = api(f"/v1/paths/console_paths/report?from={quoted(since)}&to={quoted(until)}")
        wanted = sorted((l["source"], l["target"], l["users"]) for l in report["sankey"]["links"])
        bands = page.locator("#sankey path.band")
        shown = sorted((bands.nth(i).get_attribute("data-source"), bands.nth(i).get_attribute("data-target"),
                        int(bands.nth(i).get_attribute("data-users"))) for i in range(bands.count()))
        assert shown == wanted and wanted, f"{shown} on the page, {wanted} reported"
        rows = page.locator("#top-paths tbody tr").count()
        assert rows == len(report["top"]), f"{rows} paths listed, {len(report['top'])} reported"
        return report

    eventually(sankey_matches, "the Sankey diagram's links equal the report's")
    page.screenshot(path=os.path.join(shots, "console-paths.png"), full_page=True)

    # Dark: the page follows the system's scheme (a dark background, light text).
    page.emulate_media(color_scheme="dark")
    page.goto(f"{base}/#journeys/j2_win_back")
    expect(page.locator("#graph [data-node]")).to_have_count(5)
    background, text = page.evaluate(
        "[getComputedStyle(document.documentElement).backgroundColor, getComputedStyle(document.body).color]")

    def luminance(rgb):
        r, g, b = [int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    assert luminance(background) < 60 < 180 < luminance(text), f"dark: {background} under {text}"
    page.screenshot(path=os.path.join(shots, "console-journey-dark.png"))
    page.emulate_media(color_scheme="light")

    # A phone's width: the pages fit (a journey's graph is shrunk to the screen).
    page.set_viewport_size({"width": 390, "height": 844})
    for where in ["#journeys/j2_win_back", "#funnels/console_funnel", "#cohorts/console_cohort", "#paths/console_paths", "#segments", f"#segments/{biggest}", "#editor/journey", "#users/console-new-0"]:
        page.goto(f"{base}/{where}")
        expect(page.locator("main h1")).to_be_visible()
        assert_fits(page, 390, where)

    assert not policy, f"content security policy violations: {policy}"
    assert not errors, f"errors in the page: {errors}"
    browser.close()
print("console pages: ok")
