//! The synthetic workload of `../shared/BENCHMARK.md`: users `u<N>` with a skewed
//! (Zipf-like) activity who come in sessions of eight events (browsing, shopping down the
//! product funnel, answering an email), and `identify` calls whose `plan` and `country`
//! traits change over time. Event `i` is a pure function of `(seed, i)`, so any slice can be
//! made alone: a few sessions run at once, interleaved step by step so that a session lasts
//! a few minutes, and event times follow the index (out of order by at most the jitter), as
//! in a log written in arrival order.

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

impl GeneratorConfig {
    /// Milliseconds of event time between two consecutive events.
    fn spacing(&self) -> f64 {
        self.span_ms as f64 / self.events.max(1) as f64
    }

    /// Sessions running at once: enough for each to last about `SESSION_MS`.
    pub fn concurrency(&self) -> u64 {
        ((SESSION_MS as f64 / (SESSION as f64 * self.spacing())).round() as u64).clamp(1, 4096)
    }

    /// Session and step of event `i`.
    fn place(&self, i: u64) -> (u64, u64) {
        let c = self.concurrency();
        let (block, rest) = (i / (SESSION * c), i % (SESSION * c));
        (block * c + rest % c, rest / c)
    }
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

/// Changes whenever the same `(seed, i)` would give a different event, so that files made
/// by an earlier version are not taken for this one's.
pub const VERSION: u32 = 2;

/// Events per session: in each block of `SESSION * c` events (`c` the concurrency), event
/// `b + s + c * j` is step `j` of the block's session `s`.
pub const SESSION: u64 = 8;
/// How long a session should last, when events are dense enough.
const SESSION_MS: u64 = 4 * 60_000;
/// Traits hold for an era of this long (shifted per user), then may change.
const ERA_MS: u64 = 21 * 86_400_000;
const PLANS: [(&str, u32); 3] = [("free", 70), ("pro", 25), ("enterprise", 5)];
const COUNTRIES: [&str; 8] = ["US", "CA", "GB", "DE", "FR", "BR", "IN", "JP"];
const CATEGORIES: [&str; 5] = ["books", "music", "games", "garden", "kitchen"];

/// What a session is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Pages and products, nothing bought.
    Browse,
    /// Down the funnel: products, the cart, and maybe an order.
    Shop {
        /// Whether the cart ends in an order.
        orders: bool,
    },
    /// Opens a campaign email, then looks around.
    Email,
}

/// A session: its user, kind, and whether it starts with an identify call.
#[derive(Clone, Copy, Debug)]
struct Session {
    user: u64,
    kind: Kind,
    identifies: bool,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: decorrelates (seed, index) pairs.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng(parts: &[u64]) -> SmallRng {
    SmallRng::seed_from_u64(parts.iter().fold(0x5EED, |acc, p| mix(acc ^ mix(*p))))
}

fn session(config: &GeneratorConfig, k: u64) -> Session {
    let mut r = rng(&[config.seed, k, 0]);
    // Skewed activity: low user numbers are much more active.
    let u: f64 = r.gen();
    let user = ((u.powf(2.5) * config.users as f64) as u64).min(config.users.saturating_sub(1));
    let roll = r.gen_range(0..100u32);
    let kind = match roll {
        0..=49 => Kind::Browse,
        50..=84 => Kind::Shop { orders: r.gen_bool(0.4) },
        _ => Kind::Email,
    };
    Session { user, kind, identifies: r.gen_bool(0.6) }
}

/// The name of step `j` of a session (`None`: an identify call).
fn step_name(s: &Session, j: u64) -> Option<&'static str> {
    if j == 0 && s.identifies {
        return None;
    }
    Some(match (s.kind, j) {
        (Kind::Email, 0 | 1) => "Email Opened",
        (Kind::Shop { .. }, 4) => "Product Added",
        (Kind::Shop { .. }, 5) => "Cart Viewed",
        (Kind::Shop { orders: true }, 6) => "Order Completed",
        (Kind::Shop { .. }, 7) => "Product Added",
        (_, j) if j % 3 == 0 => "Page Viewed",
        _ => "Product Viewed",
    })
}

/// A user's traits in the era holding `ts`: the plan may change from one era to the next,
/// and a few users move country.
fn traits(config: &GeneratorConfig, user: u64, ts: u64) -> (&'static str, &'static str) {
    let shift = mix(config.seed ^ user) % ERA_MS;
    let era = (ts + shift) / ERA_MS;
    let mut r = rng(&[config.seed, user, era, 1]);
    let p = r.gen_range(0..100u32);
    let plan = if p < PLANS[0].1 {
        PLANS[0].0
    } else if p < PLANS[0].1 + PLANS[1].1 {
        PLANS[1].0
    } else {
        PLANS[2].0
    };
    let home = (mix(config.seed ^ mix(user)) % COUNTRIES.len() as u64) as usize;
    let moved = r.gen_range(0..10u32) == 0;
    let country = COUNTRIES[if moved { r.gen_range(0..COUNTRIES.len()) } else { home }];
    (plan, country)
}

/// Writes event `i` as one JSON line (without the newline) into `out`.
pub fn event_line(config: &GeneratorConfig, i: u64, out: &mut String) {
    let (k, j) = config.place(i);
    let s = session(config, k);
    let mut r = rng(&[config.seed, k, j + 1]);
    let ts = config.start_ms + (i as f64 * config.spacing()) as u64 + r.gen_range(0..=config.jitter_ms);
    let user = s.user;
    let _ = write!(out, r#"{{"messageId":"g{}-{}","userId":"u{}","timestamp":{}"#, config.seed, i, user, ts);
    let Some(name) = step_name(&s, j) else {
        let (plan, country) = traits(config, user, ts);
        let _ = write!(
            out,
            r#","type":"identify","traits":{{"plan":"{plan}","country":"{country}","email":"user{user}@example.com"}}}}"#
        );
        return;
    };
    let _ = write!(out, r#","type":"track","event":"{name}","properties":{{"#);
    match name {
        "Order Completed" => {
            let cents = r.gen_range(500..25_000u64);
            let _ = write!(out, r#""revenue":{}.{:02},"currency":"USD""#, cents / 100, cents % 100);
        }
        "Product Viewed" | "Product Added" => {
            // Within a session, products come from one category.
            let category = (mix(config.seed ^ mix(k)) % CATEGORIES.len() as u64) as u32;
            let product = r.gen_range(0..1_000u32) * 5 + category;
            let cents = 100 + (product as u64 * 37) % 20_000;
            let _ = write!(
                out,
                r#""product_id":"p{product}","category":"{}","price":{}.{:02}"#,
                CATEGORIES[category as usize],
                cents / 100,
                cents % 100
            );
        }
        "Page Viewed" => {
            let page = r.gen_range(0..50u32);
            let _ = write!(out, r#""path":"/page/{page}""#);
        }
        "Email Opened" => {
            let _ = write!(out, r#""campaign":"c{}""#, (ts / (7 * 86_400_000)) % 100);
        }
        _ => {}
    }
    out.push_str("}}");
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

/// Makes every event as NDJSON, `threads` slices of `chunk` events at a time in parallel,
/// and hands each slice's text to `sink` in order.
pub fn generate_parallel<E: From<io::Error>>(
    config: &GeneratorConfig,
    threads: u64,
    chunk: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let (threads, chunk) = (threads.max(1), chunk.max(1));
    let mut start = 0;
    while start < config.events {
        let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|k| (start + k * chunk, (start + (k + 1) * chunk).min(config.events)))
                .filter(|(a, b)| a < b)
                .map(|(a, b)| {
                    s.spawn(move || {
                        let mut buf = Vec::with_capacity(((b - a) * 200) as usize);
                        write_ndjson(config, a..b, &mut buf).map(|_| buf)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("generator thread panicked")).collect::<io::Result<_>>()
        })?;
        for part in parts {
            sink(&part)?;
        }
        start = (start + threads * chunk).min(config.events);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as J;
    use std::collections::{BTreeMap, BTreeSet};

    fn events(config: &GeneratorConfig) -> Vec<J> {
        (0..config.events)
            .map(|i| {
                let mut line = String::new();
                event_line(config, i, &mut line);
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }

    #[test]
    fn each_event_depends_only_on_seed_and_index() {
        let config = GeneratorConfig { events: 1000, users: 50, ..Default::default() };
        let mut whole = Vec::new();
        write_ndjson(&config, 0..1000, &mut whole).unwrap();
        let mut tail = Vec::new();
        write_ndjson(&config, 501..1000, &mut tail).unwrap();
        assert!(whole.ends_with(&tail));
        let other = GeneratorConfig { seed: 2, ..config.clone() };
        let mut different = Vec::new();
        write_ndjson(&other, 0..1000, &mut different).unwrap();
        assert_ne!(whole, different);
    }

    #[test]
    fn parallel_slices_come_out_in_order() {
        let config = GeneratorConfig { events: 10_007, users: 50, ..Default::default() };
        let mut sequential = Vec::new();
        write_ndjson(&config, 0..config.events, &mut sequential).unwrap();
        let mut parallel = Vec::new();
        generate_parallel(&config, 3, 1_000, |part| -> io::Result<()> {
            parallel.extend_from_slice(part);
            Ok(())
        })
        .unwrap();
        assert!(parallel == sequential);
    }

    #[test]
    fn sessions_walk_the_funnel_and_activity_is_skewed() {
        let config = GeneratorConfig { events: 80_000, users: 1_000, span_ms: 10 * 86_400_000, ..Default::default() };
        let all = events(&config);
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        for e in &all {
            *names.entry(e.get("event").and_then(J::as_str).unwrap_or("identify").to_string()).or_default() += 1;
        }
        let share = |n: &str| names[n] as f64 / all.len() as f64;
        assert_eq!(names.len(), 7, "{names:?}");
        // The funnel narrows: views > adds > carts > orders.
        assert!(share("Product Viewed") > share("Product Added"), "{names:?}");
        assert!(share("Product Added") > share("Cart Viewed"), "{names:?}");
        assert!(share("Cart Viewed") > share("Order Completed") && share("Order Completed") > 0.01, "{names:?}");
        // Every order follows a cart view by the same user in the same session (the session's
        // previous step, `concurrency` events before), and the file is in time order but for
        // the jitter.
        let c = config.concurrency() as usize;
        assert!(c > 1, "sessions interleave at this density");
        let mut latest = 0;
        for (i, e) in all.iter().enumerate() {
            let ts = e["timestamp"].as_u64().unwrap();
            assert!(ts + config.jitter_ms >= latest, "event {i} is more than the jitter out of order");
            latest = latest.max(ts);
            if e["event"] == "Order Completed" {
                let cart = &all[i - c];
                assert_eq!((cart["event"].as_str(), &cart["userId"]), (Some("Cart Viewed"), &e["userId"]));
            }
        }
        // Skew: the most active tenth of the users makes far more than a tenth of the events.
        let mut per_user: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &all {
            *per_user.entry(e["userId"].as_str().unwrap()).or_default() += 1;
        }
        let mut counts: Vec<u64> = per_user.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: u64 = counts[..counts.len() / 10].iter().sum();
        assert!(top as f64 > 0.3 * all.len() as f64, "top tenth made {top} of {}", all.len());
    }

    #[test]
    fn traits_change_over_time_but_not_within_an_era() {
        let config = GeneratorConfig { events: 200_000, users: 200, ..Default::default() };
        let mut plans: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in events(&config).iter().filter(|e| e["type"] == "identify") {
            let user = e["userId"].as_str().unwrap().to_string();
            assert_eq!(e["traits"]["email"], format!("user{}@example.com", &user[1..]));
            plans.entry(user).or_default().insert(e["traits"]["plan"].as_str().unwrap().to_string());
        }
        let changed = plans.values().filter(|p| p.len() > 1).count();
        assert!(changed > plans.len() / 4, "{changed} of {} users changed plan", plans.len());
        let ts = config.start_ms + 5 * 86_400_000;
        assert_eq!(traits(&config, 7, ts), traits(&config, 7, ts + 1));
    }
}
