//! A funnel's report: the query (a range of entry times cut into buckets), the share of it
//! each worker counts from its users' attempts ([`FunnelCell`]s), and the report made of every
//! worker's cells. Workers count; this module only adds and ranks, so `journeyflow run`'s API
//! and `journeyflow replay` make the same report from the same cells.

use crate::buckets::Buckets;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Event time in epoch milliseconds.
pub type Time = u64;

/// The most breakdown values a bucket names; the others are added up as `other`.
pub const MAX_BREAKDOWN: usize = 50;

/// The most cells (bucket and breakdown value) one worker's share of a report may have: a
/// trait with a value per user, cut into many buckets, would otherwise make an answer as large
/// as the users times the buckets.
pub const MAX_CELLS: usize = 50_000;

/// The most times between steps one worker's share may carry (8 bytes each).
pub const MAX_TIMES: usize = 4_000_000;

/// One worker's share of a report, with the shape of the funnel it counted (the definition may
/// be replaced while a report is being made: the share names its own steps).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelPart {
    /// The steps' event names.
    pub names: Vec<String>,
    /// Whether the funnel is broken down by a trait.
    pub breakdown: bool,
    /// The cells.
    pub cells: Vec<FunnelCell>,
}

/// What one worker counted of one bucket and one breakdown value: users who reached each step
/// (their first attempt in the bucket), and each such user's time from the step before to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelCell {
    /// The bucket's index.
    pub bucket: u32,
    /// The breakdown value as JSON text (`None`: the user has none, or the funnel no breakdown).
    pub breakdown: Option<String>,
    /// Users who reached each step.
    pub users: Vec<u64>,
    /// For each step after the first, the milliseconds each user who reached it took from the
    /// step before.
    pub times: Vec<Vec<u64>>,
}

impl FunnelCell {
    /// An empty cell of a funnel with `steps` steps.
    pub fn new(bucket: u32, breakdown: Option<String>, steps: usize) -> FunnelCell {
        FunnelCell { bucket, breakdown, users: vec![0; steps], times: vec![Vec::new(); steps.saturating_sub(1)] }
    }

    /// Counts one user whose attempt started at `start` and reached the later steps at
    /// `reached` (as many as it reached).
    pub fn count(&mut self, start: Time, reached: &[Time]) {
        let steps = self.users.len();
        for slot in self.users.iter_mut().take(1 + reached.len()) {
            *slot += 1;
        }
        let mut previous = start;
        for (times, at) in self.times.iter_mut().zip(reached).take(steps.saturating_sub(1)) {
            times.push(at.saturating_sub(previous));
            previous = *at;
        }
    }

    fn add(&mut self, other: &FunnelCell) {
        for (a, b) in self.users.iter_mut().zip(&other.users) {
            *a += b;
        }
        for (a, b) in self.times.iter_mut().zip(&other.times) {
            a.extend_from_slice(b);
        }
    }
}

/// The nearest-rank percentile `p` (of 100) of sorted `values`: the smallest value at or
/// above which `p`% of them lie (`quantile_disc` in SQL).
pub fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

fn ratio(a: u64, b: u64) -> Value {
    match b {
        0 => Value::Null,
        _ => json!(a as f64 / b as f64),
    }
}

/// The steps of one cell as the report shows them.
fn steps_json(cell: &mut FunnelCell, names: &[String]) -> Vec<Value> {
    let first = cell.users.first().copied().unwrap_or(0);
    (0..cell.users.len())
        .map(|s| {
            let users = cell.users[s];
            let previous = if s == 0 { users } else { cell.users[s - 1] };
            let time = match s.checked_sub(1).and_then(|i| cell.times.get_mut(i)) {
                Some(times) if !times.is_empty() => {
                    times.sort_unstable();
                    json!({"p50": percentile(times, 50), "p90": percentile(times, 90)})
                }
                _ => Value::Null,
            };
            json!({"event": names.get(s), "users": users, "conversion_from_previous": ratio(users, previous),
                "conversion_from_first": ratio(users, first), "time_to_convert_ms": time})
        })
        .collect()
}

/// The report of funnel `id` (its steps' event names `names`, broken down if `breakdown`) as
/// of `as_of`, from every worker's cells.
pub fn report(
    id: &str,
    names: &[String],
    breakdown: bool,
    query: &Buckets,
    as_of: Time,
    cells: Vec<FunnelCell>,
) -> Value {
    let steps = names.len();
    let mut merged: BTreeMap<(u32, Option<String>), FunnelCell> = BTreeMap::new();
    for cell in cells {
        let key = (cell.bucket, cell.breakdown.clone());
        merged.entry(key).or_insert_with(|| FunnelCell::new(cell.bucket, cell.breakdown.clone(), steps)).add(&cell);
    }
    let mut by_bucket: BTreeMap<u32, Vec<FunnelCell>> = BTreeMap::new();
    for ((bucket, _), cell) in merged {
        by_bucket.entry(bucket).or_default().push(cell);
    }
    let buckets: Vec<Value> = (0..query.buckets() as u32)
        .map(|b| {
            let (start, end) = query.bounds(b);
            let mut cells = by_bucket.remove(&b).unwrap_or_default();
            let mut all = FunnelCell::new(b, None, steps);
            for cell in &cells {
                all.add(cell);
            }
            let mut out = json!({"start": start, "end": end, "steps": steps_json(&mut all, names)});
            if breakdown {
                // Most users first, then by value.
                cells.sort_by(|a, b| b.users[0].cmp(&a.users[0]).then_with(|| a.breakdown.cmp(&b.breakdown)));
                let rest = cells.split_off(cells.len().min(MAX_BREAKDOWN));
                let named: Vec<Value> = cells
                    .iter_mut()
                    .map(|c| {
                        let value: Option<Value> = c.breakdown.as_deref().and_then(|v| serde_json::from_str(v).ok());
                        json!({"value": value, "steps": steps_json(c, names)})
                    })
                    .collect();
                out["breakdown"] = json!(named);
                if !rest.is_empty() {
                    let mut other = FunnelCell::new(b, None, steps);
                    for cell in &rest {
                        other.add(cell);
                    }
                    out["other"] = json!({"values": rest.len(), "steps": steps_json(&mut other, names)});
                }
            }
            out
        })
        .collect();
    json!({"funnel": id, "as_of": as_of, "from": query.from, "to": query.to, "step": query.step, "buckets": buckets})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!((percentile(&ten, 50), percentile(&ten, 90)), (Some(5), Some(9)));
        assert_eq!((percentile(&[1, 2], 50), percentile(&[1, 2], 90)), (Some(1), Some(2)));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn workers_cells_add_up_into_rates_and_times() {
        let names = vec!["View".to_string(), "Buy".to_string()];
        let q = Buckets::new(0, 100, None).unwrap();
        let mut a = FunnelCell::new(0, None, 2);
        a.count(10, &[15]);
        a.count(20, &[]);
        let mut b = FunnelCell::new(0, None, 2);
        b.count(30, &[60]);
        let r = report("f", &names, false, &q, 99, vec![a, b]);
        let steps = &r["buckets"][0]["steps"];
        assert_eq!(steps[0]["users"], 3);
        assert_eq!(steps[1]["users"], 2);
        assert_eq!(steps[1]["conversion_from_previous"], json!(2.0 / 3.0));
        assert_eq!(steps[1]["time_to_convert_ms"], json!({"p50": 5, "p90": 30}));
        assert_eq!(steps[0]["time_to_convert_ms"], Value::Null);
    }

    #[test]
    fn past_fifty_values_the_rest_are_added_up_as_other() {
        let names = vec!["A".to_string(), "B".to_string()];
        let q = Buckets::new(0, 100, None).unwrap();
        let cells: Vec<FunnelCell> = (0..53u64)
            .map(|v| {
                let mut c = FunnelCell::new(0, Some(v.to_string()), 2);
                // Value v has v + 1 users, the first of whom converted.
                for u in 0..=v {
                    c.count(10, if u == 0 { &[20] } else { &[] });
                }
                c
            })
            .collect();
        let r = report("f", &names, true, &q, 99, cells);
        let bucket = &r["buckets"][0];
        let shown = bucket["breakdown"].as_array().unwrap();
        assert_eq!(shown.len(), MAX_BREAKDOWN);
        assert_eq!((shown[0]["value"].clone(), shown[0]["steps"][0]["users"].clone()), (json!(52), json!(53)));
        // Values 0, 1 and 2 (1 + 2 + 3 users, 3 conversions) are the rest.
        assert_eq!(bucket["other"]["values"], 3);
        assert_eq!(bucket["other"]["steps"][0]["users"], 6);
        assert_eq!(bucket["other"]["steps"][1]["users"], 3);
        assert_eq!(bucket["steps"][0]["users"], (1..=53).sum::<u64>());
    }
}
