"""The benchmark's funnel computed from scratch by DuckDB: loads a generated NDJSON file into a
table (duplicates once) and runs the tests' reference SQL (pipeline/tests/python/
funnel_reference.py) for one report over every entry time; prints the seconds each took and
the users at each step as JSON.

Usage: funnel_duckdb.py EVENTS_FILE FUNNEL_JSON
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "pipeline" / "tests" / "python"))

import duckdb  # noqa: E402
import funnel_reference  # noqa: E402

events, funnel = sys.argv[1], json.loads(sys.argv[2])
started = time.monotonic()
con = duckdb.connect()
columns = {"messageId": "VARCHAR", "userId": "VARCHAR", "anonymousId": "VARCHAR", "timestamp": "BIGINT",
           "type": "VARCHAR", "event": "VARCHAR", "properties": "JSON", "traits": "JSON"}
con.execute(f"""CREATE TABLE ev AS SELECT DISTINCT ON (messageId)
    coalesce(userId, anonymousId) AS user_id, "timestamp" AS ts, messageId AS mid, "type" AS kind,
    coalesce(event, '') AS name, CASE WHEN "type" = 'identify' THEN traits ELSE properties END AS props
    FROM read_ndjson(?, columns = {columns!r})""".replace("?", "'" + events.replace("'", "''") + "'"))
loaded = time.monotonic()
everything = {"as_of": 2**62, "from": 0, "to": 2**62, "step": None}
report = funnel_reference.report(con, funnel, everything, None)
done = time.monotonic()
users = [s["users"] for s in report["buckets"][0]["steps"]]
print(json.dumps({"load_s": loaded - started, "query_s": done - loaded, "users": users}))
