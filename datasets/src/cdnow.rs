//! The CDNOW purchase history (`datasets/cdnow/CDNOW_master.txt`, shipped in the repository)
//! as events: each purchase is an `Order Completed` by user `c<id>` with `revenue` (dollars)
//! and `quantity` (CDs). The data has dates only: purchases happen at 12:00:00 UTC, and the
//! k-th purchase of a customer on one day (in file order) k seconds later. Events come out in
//! time order, so they replay with no lateness.

use std::fmt::Write as _;

/// A line that could not be read, with its 1-based line number.
#[derive(Debug, thiserror::Error)]
#[error("CDNOW line {line}: {reason}")]
pub struct CdnowError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One purchase.
#[derive(Clone, Debug, PartialEq)]
pub struct Purchase {
    /// Customer id.
    pub customer: u32,
    /// Event time, epoch milliseconds.
    pub ts: u64,
    /// CDs bought.
    pub quantity: u32,
    /// Dollar value.
    pub revenue: f64,
    /// 1-based line in the file.
    pub line: usize,
}

/// Parses the file's text (a header line, if present, is skipped).
pub fn parse(text: &str) -> Result<Vec<Purchase>, CdnowError> {
    let mut out = Vec::new();
    let mut same_day: std::collections::HashMap<(u32, u64), u64> = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let cols: Vec<&str> = raw.split_whitespace().collect();
        if cols.is_empty() || (line == 1 && cols[0].parse::<u32>().is_err()) {
            continue;
        }
        let err = |reason: String| CdnowError { line, reason };
        if cols.len() != 4 {
            return Err(err(format!("expected 4 columns, found {}", cols.len())));
        }
        let customer: u32 = cols[0].parse().map_err(|_| err(format!("bad customer id {:?}", cols[0])))?;
        let date =
            chrono::NaiveDate::parse_from_str(cols[1], "%Y%m%d").map_err(|_| err(format!("bad date {:?}", cols[1])))?;
        let quantity: u32 = cols[2].parse().map_err(|_| err(format!("bad quantity {:?}", cols[2])))?;
        let revenue: f64 = cols[3].parse().map_err(|_| err(format!("bad dollar value {:?}", cols[3])))?;
        let noon = date.and_hms_opt(12, 0, 0).expect("valid time").and_utc().timestamp_millis() as u64;
        let k = same_day.entry((customer, noon)).or_insert(0);
        let ts = noon + *k * 1000;
        *k += 1;
        out.push(Purchase { customer, ts, quantity, revenue, line });
    }
    out.sort_by_key(|p| (p.ts, p.line));
    Ok(out)
}

/// One purchase as a Segment `track` event line.
pub fn event_line(p: &Purchase) -> String {
    let mut s = String::with_capacity(160);
    let _ = write!(
        s,
        r#"{{"type":"track","event":"Order Completed","userId":"c{}","messageId":"cdnow-{}","timestamp":{},"properties":{{"revenue":{},"quantity":{}}}}}"#,
        p.customer, p.line, p.ts, p.revenue, p.quantity
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_same_day_purchases() {
        let text = " customer_id  date number_of_cds  dollar_value\n 00002 19970112  1   12.00\n 00001 19970101  1   11.77\n 00002 19970112  5   77.00\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].customer, 1);
        assert_eq!((p[1].line, p[2].line), (2, 4));
        assert_eq!(p[2].ts - p[1].ts, 1000);
        let v: serde_json::Value = serde_json::from_str(&event_line(&p[2])).unwrap();
        assert_eq!(v["properties"]["revenue"], 77.0);
        assert_eq!(v["userId"], "c2");
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse("1 19970101 1 2.0\n2 1997-01-01 1 2.0\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
