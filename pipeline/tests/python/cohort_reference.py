"""Retention cohort reports computed from scratch by DuckDB, for the cohort tests: an evaluation
that shares no code with the engine. Reads a JSON file
{"events": [{"user_id", "ts", "mid", "kind", "name", "props"}], "cohorts": [...],
"reports": [{"as_of", "cohort", "from", "to", "step"}], "retention": ms or null} and prints
the reports as JSON, in the engine's shape.

The rule: at time T the events are those with ts <= T still retained (ts + retention > T),
duplicates (a repeated messageId) once; a user's first event is their earliest matching the
cohort's first event, in (timestamp, messageId) order; they come back in period k when an event
matching the return event lies strictly after it (in that order) with
floor((ts - first) / period) = k; `unbounded` counts those whose last return is in period k or
later. A user is in the cohort of the bucket (of [from, to), `step` long) their first event is in.
"""


from funnel_reference import duration, run, step_sql


def places_sql(cohort, as_of, retention):
    """Each user's first event and the periods they came back in: user_id, t0, ks, last."""
    period = duration(cohort["period"])
    kept = f"e.ts <= {as_of}" + ("" if retention is None else f" AND e.ts + {retention} > {as_of}")
    return f"""
      WITH m AS (SELECT e.user_id, e.ts, e.mid, {step_sql(cohort['first'])} AS f, {step_sql(cohort['return'])} AS r
                 FROM ev e WHERE {kept}),
      s AS (SELECT user_id, ts AS t0, mid AS m0 FROM (
              SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts, mid) AS rn FROM m WHERE f) WHERE rn = 1),
      back AS (SELECT s.user_id, (m.ts - s.t0) // {period} AS k FROM s JOIN m USING (user_id)
               WHERE m.r AND (m.ts > s.t0 OR (m.ts = s.t0 AND m.mid > s.m0)))
      SELECT s.user_id, s.t0, list(DISTINCT back.k) FILTER (WHERE back.k IS NOT NULL) AS ks, max(back.k) AS last
      FROM s LEFT JOIN back USING (user_id) GROUP BY s.user_id, s.t0"""


def report(con, cohort, q, retention):
    as_of, start, end, step = q["as_of"], q["from"], q["to"], q.get("step")
    period, periods = duration(cohort["period"]), cohort["periods"]
    buckets = 1 if step is None else -(-(end - start) // step)
    span = step if step is not None else end - start
    cells = {}
    for _, t0, ks, last in con.execute(places_sql(cohort, as_of, retention)).fetchall():
        if not (start <= t0 < end):
            continue
        users, retained, unbounded = cells.setdefault((t0 - start) // span, [0, [0] * periods, [0] * periods])
        cells[(t0 - start) // span][0] = users + 1
        for k in range(periods):
            retained[k] += 1 if ks and k in ks else 0
            unbounded[k] += 1 if last is not None and last >= k else 0
    out = []
    for b in range(buckets):
        b_start = start + (step or 0) * b
        b_end = end if step is None else min(b_start + step, end)
        users, retained, unbounded = cells.get(b, [0, [0] * periods, [0] * periods])
        shown = [{
            "period": k,
            "retained": retained[k],
            "rate": None if users == 0 else retained[k] / users,
            "unbounded": unbounded[k],
            "unbounded_rate": None if users == 0 else unbounded[k] / users,
            "complete": b_end + period * (k + 1) <= as_of + 1,
        } for k in range(periods)]
        out.append({"start": b_start, "end": b_end, "users": users, "periods": shown})
    return {"cohort": cohort["id"], "as_of": as_of, "from": start, "to": end, "step": step, "period": period,
            "cohorts": out}


def main():
    run("cohort", "cohorts", report)


if __name__ == "__main__":
    main()
