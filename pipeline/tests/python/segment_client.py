"""Sends events to journeyflow with Segment's own Python library (segment-analytics-python),
as a team's existing code would: `python segment_client.py HOST WRITE_KEY`."""

import sys

import segment.analytics as analytics

analytics.host = sys.argv[1]
analytics.write_key = sys.argv[2]
analytics.sync_mode = True
errors = []
analytics.on_error = lambda error, items: errors.append(error)

analytics.identify("py-user-1", {"plan": "pro", "email": "one@example.com"})
analytics.identify("py-user-2", {"plan": "free"})
for n in range(3):
    analytics.track("py-user-1", "A", {"n": n})
analytics.track("py-user-2", "A", {"n": 9})
analytics.page("py-user-2", "Docs", "Pricing", {"url": "https://example.com/pricing"})
analytics.flush()
if errors:
    sys.exit("send failed: %r" % errors)
