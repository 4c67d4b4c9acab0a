//! The synthetic workload of `../shared/BENCHMARK.md`: users `u<N>` with a skewed
//! (Zipf-like) activity, a product funnel, and `identify` calls whose `plan`, `country`
//! and `email` traits change over time. Event `i` is a pure function of `(seed, i)`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::io::{self, Write};

/// Shape of a generated data set.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    /// Number of distinct users (ids `u0` .. `u{users-1}`).
    pub users: u64,
    /// Number of events.
    pub events: u64,
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Epoch milliseconds of the first event.
    pub start_ms: u64,
    /// Span of event time.
    pub span_ms: u64,
    /// Events are out of time order by up to this much.
    pub jitter_ms: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            users: 100_000,
            events: 1_000_000,
            seed: 1,
            start_ms: 1_704_067_200_000, // 2024-01-01T00:00:00Z
            span_ms: 60 * 86_400_000,
            jitter_ms: 60_000,
        }
    }
}

const PLANS: [(&str, u32); 3] = [("free", 70), ("pro", 25), ("enterprise", 5)];
const COUNTRIES: [&str; 8] = ["US", "CA", "GB", "DE", "FR", "BR", "IN", "JP"];
const CATEGORIES: [&str; 5] = ["books", "music", "games", "garden", "kitchen"];
/// Event names with their weights out of 100; the rest are identify calls.
const TRACKS: [(&str, u32); 6] = [
    ("Page Viewed", 30),
    ("Product Viewed", 30),
    ("Product Added", 10),
    ("Cart Viewed", 8),
    ("Order Completed", 5),
    ("Email Opened", 9),
];

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: decorrelates (seed, index) pairs.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes event `i` as one JSON line (without the newline) into `out`.
pub fn event_line(config: &GeneratorConfig, i: u64, out: &mut String) {
    let mut rng = SmallRng::seed_from_u64(mix(config.seed ^ mix(i)));
    let base = config.start_ms + (i as u128 * config.span_ms as u128 / config.events.max(1) as u128) as u64;
    let ts = base + rng.gen_range(0..=config.jitter_ms);
    // Skewed activity: low user numbers are much more active.
    let u: f64 = rng.gen();
    let user = ((u.powf(2.5) * config.users as f64) as u64).min(config.users.saturating_sub(1));
    let roll = rng.gen_range(0..100u32);
    let mut acc = 0;
    let track = TRACKS.iter().find(|(_, w)| {
        acc += w;
        roll < acc
    });
    let _ = write!(out, r#"{{"messageId":"g{}-{}","userId":"u{}","timestamp":{}"#, config.seed, i, user, ts);
    match track {
        None => {
            let p = rng.gen_range(0..100u32);
            let plan = if p < PLANS[0].1 {
                PLANS[0].0
            } else if p < PLANS[0].1 + PLANS[1].1 {
                PLANS[1].0
            } else {
                PLANS[2].0
            };
            let country = COUNTRIES[rng.gen_range(0..COUNTRIES.len())];
            let _ = write!(
                out,
                r#","type":"identify","traits":{{"plan":"{plan}","country":"{country}","email":"user{user}@example.com"}}}}"#
            );
        }
        Some((name, _)) => {
            let _ = write!(out, r#","type":"track","event":"{name}","properties":{{"#);
            match *name {
                "Order Completed" => {
                    let cents = rng.gen_range(500..25_000u64);
                    let _ = write!(out, r#""revenue":{}.{:02},"currency":"USD""#, cents / 100, cents % 100);
                }
                "Product Viewed" | "Product Added" => {
                    let product = rng.gen_range(0..5_000u32);
                    let category = CATEGORIES[(product % 5) as usize];
                    let cents = 100 + (product as u64 * 37) % 20_000;
                    let _ = write!(
                        out,
                        r#""product_id":"p{product}","category":"{category}","price":{}.{:02}"#,
                        cents / 100,
                        cents % 100
                    );
                }
                "Page Viewed" => {
                    let page = rng.gen_range(0..50u32);
                    let _ = write!(out, r#""path":"/page/{page}""#);
                }
                _ => {}
            }
            out.push_str("}}");
        }
    }
}

/// Writes events `range` as NDJSON.
pub fn write_ndjson<W: Write>(config: &GeneratorConfig, range: std::ops::Range<u64>, out: &mut W) -> io::Result<()> {
    let mut line = String::with_capacity(256);
    for i in range {
        line.clear();
        event_line(config, i, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_depends_only_on_seed_and_index() {
        let config = GeneratorConfig { events: 1000, users: 50, ..Default::default() };
        let mut whole = Vec::new();
        write_ndjson(&config, 0..1000, &mut whole).unwrap();
        let mut tail = Vec::new();
        write_ndjson(&config, 500..1000, &mut tail).unwrap();
        assert!(whole.ends_with(&tail));
        let other = GeneratorConfig { seed: 2, ..config.clone() };
        let mut different = Vec::new();
        write_ndjson(&other, 0..1000, &mut different).unwrap();
        assert_ne!(whole, different);
    }

    #[test]
    fn lines_are_valid_json_with_the_funnel() {
        let config = GeneratorConfig { events: 2000, users: 100, ..Default::default() };
        let mut names = std::collections::BTreeSet::new();
        for i in 0..config.events {
            let mut line = String::new();
            event_line(&config, i, &mut line);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            names.insert(v.get("event").and_then(|e| e.as_str()).unwrap_or("identify").to_string());
        }
        assert_eq!(names.len(), 7, "{names:?}");
    }
}
