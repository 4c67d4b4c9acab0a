//! A retention cohort's report: the share each worker counts of it from its users
//! ([`CohortCell`]s, one per cohort), and the report made of every worker's shares. Workers
//! count; this module only adds, so `journeyflow run`'s API and `journeyflow replay` make the
//! same report from the same cells.

use crate::buckets::Buckets;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Event time in epoch milliseconds.
pub type Time = u64;

/// What one worker counted of one cohort (the users whose first event lies in one bucket).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortCell {
    /// The bucket's index.
    pub bucket: u32,
    /// Users in the cohort.
    pub users: u64,
    /// For each period, the users who came back in it.
    pub retained: Vec<u64>,
    /// For each period, the users who came back in it or in any later one.
    pub unbounded: Vec<u64>,
}

impl CohortCell {
    /// An empty cohort of `periods` periods.
    pub fn new(bucket: u32, periods: u32) -> CohortCell {
        let n = periods as usize;
        CohortCell { bucket, users: 0, retained: vec![0; n], unbounded: vec![0; n] }
    }

    /// Counts one user who came back in the periods whose bits `returned` sets, the last time
    /// in period `last`.
    pub fn count(&mut self, returned: u64, last: Option<u64>) {
        self.users += 1;
        for (k, (kept, since)) in self.retained.iter_mut().zip(self.unbounded.iter_mut()).enumerate() {
            *kept += (returned >> k) & 1;
            *since += u64::from(last.is_some_and(|l| l >= k as u64));
        }
    }

    fn add(&mut self, other: &CohortCell) {
        self.users += other.users;
        for (a, b) in self.retained.iter_mut().zip(&other.retained) {
            *a += b;
        }
        for (a, b) in self.unbounded.iter_mut().zip(&other.unbounded) {
            *a += b;
        }
    }
}

/// One worker's share of a report, with the shape of the cohort it counted (the definition may
/// be replaced while a report is being made).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortPart {
    /// Periods reported.
    pub periods: u32,
    /// One period's length.
    pub period: Time,
    /// The cells.
    pub cells: Vec<CohortCell>,
}

fn rate(a: u64, b: u64) -> Value {
    match b {
        0 => Value::Null,
        _ => json!(a as f64 / b as f64),
    }
}

/// The report of cohort `id` (`periods` periods of `period`) as of `as_of`, from every
/// worker's cells: per cohort (bucket of first events), its users and, per period, those who
/// came back in it (`retained`) and in it or later (`unbounded`), with their shares; a period
/// is `complete` once it has ended for every user of the cohort.
pub fn report(id: &str, periods: u32, period: Time, query: &Buckets, as_of: Time, cells: Vec<CohortCell>) -> Value {
    let mut merged: BTreeMap<u32, CohortCell> = BTreeMap::new();
    for cell in cells {
        merged.entry(cell.bucket).or_insert_with(|| CohortCell::new(cell.bucket, periods)).add(&cell);
    }
    let cohorts: Vec<Value> = (0..query.buckets() as u32)
        .map(|b| {
            let (start, end) = query.bounds(b);
            let cell = merged.remove(&b).unwrap_or_else(|| CohortCell::new(b, periods));
            let shown: Vec<Value> = (0..periods as usize)
                .map(|k| {
                    let ends = end.saturating_add(period.saturating_mul(k as u64 + 1));
                    json!({"period": k, "retained": cell.retained[k], "rate": rate(cell.retained[k], cell.users),
                        "unbounded": cell.unbounded[k], "unbounded_rate": rate(cell.unbounded[k], cell.users),
                        "complete": ends <= as_of.saturating_add(1)})
                })
                .collect();
            json!({"start": start, "end": end, "users": cell.users, "periods": shown})
        })
        .collect();
    json!({"cohort": id, "as_of": as_of, "from": query.from, "to": query.to, "step": query.step,
        "period": period, "cohorts": cohorts})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_cells_add_up_into_shares() {
        let q = Buckets::new(0, 200, Some(100)).unwrap();
        let mut a = CohortCell::new(0, 3);
        a.count(0b011, Some(1));
        a.count(0, Some(9));
        let mut b = CohortCell::new(0, 3);
        b.count(0, None);
        let mut c = CohortCell::new(1, 3);
        c.count(0b100, Some(2));
        let r = report("c", 3, 10, &q, 150, vec![a, b, c]);
        let first = &r["cohorts"][0];
        assert_eq!(first["users"], 3);
        let retained: Vec<u64> = (0..3).map(|k| first["periods"][k]["retained"].as_u64().unwrap()).collect();
        let unbounded: Vec<u64> = (0..3).map(|k| first["periods"][k]["unbounded"].as_u64().unwrap()).collect();
        assert_eq!((retained, unbounded), (vec![1, 1, 0], vec![2, 2, 1]));
        assert_eq!(first["periods"][0]["rate"], json!(1.0 / 3.0));
        // The first cohort ends at 100: its period 2 ends at 130, before 150; the second's
        // (ending at 200) does not.
        assert_eq!(
            (first["periods"][2]["complete"].as_bool(), r["cohorts"][1]["periods"][0]["complete"].as_bool()),
            (Some(true), Some(false))
        );
    }
}
