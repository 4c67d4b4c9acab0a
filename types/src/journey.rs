//! The journey model: a validated journey definition (entry, node graph, goal, exit rule,
//! re-entry, schedule, quiet hours, frequency cap) and the small deterministic rules every
//! implementation must share: split assignment, quiet-hours release, action ids.

use crate::condition::{Condition, EventFilter};
use crate::duration::Duration;
use crate::key::Key;
use std::collections::BTreeMap;

/// A validated journey definition. Node ids are kept in a sorted map; `source` is the JSON it
/// was read from, returned as is by the control API.
#[derive(Clone, Debug, PartialEq)]
pub struct JourneyDefinition {
    /// `[a-z0-9_-]{1,64}`.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// What brings a user in.
    pub entry: Entry,
    /// The node a user enters at.
    pub start: String,
    /// The node graph by node id.
    pub nodes: BTreeMap<String, Node>,
    /// Performing this while in the journey converts the user, wherever they are.
    pub goal: Option<EventFilter>,
    /// The goal event's property (a dot path) whose number is the conversion's value.
    pub goal_value: Option<String>,
    /// A user for whom this holds leaves (and is not let in while it holds).
    pub exit_when: Option<Condition>,
    /// Whether and when a user may enter again.
    pub re_entry: ReEntry,
    /// When entries are accepted and when the journey ends.
    pub schedule: Schedule,
    /// Actions falling inside this daily window are held until it ends.
    pub quiet_hours: Option<QuietHours>,
    /// At most this many actions per user in a trailing window.
    pub frequency_cap: Option<FrequencyCap>,
    /// At most this many sent actions over the whole journey (all users).
    pub quota: Option<Quota>,
    /// The definition as written.
    pub source: serde_json::Value,
}

/// What brings a user into a journey; the entry time is the event's or the change's time, or
/// the scheduled occurrence's.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Performing a matching event.
    Event(EventFilter),
    /// Entering the segment.
    SegmentEnter(String),
    /// Leaving the segment.
    SegmentExit(String),
    /// At each occurrence, every member of the segment then.
    Scheduled {
        /// The segment.
        segment: String,
        /// When.
        occurrences: Occurrences,
    },
}

/// When a scheduled entry lets a segment's members in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Occurrences {
    /// Once, at this instant (epoch ms).
    Once(u64),
    /// Every `days` days (1 or 7) at a local time of day.
    Every {
        /// 1 (daily) or 7 (weekly: on the local weekday of `starting`).
        days: u32,
        /// Minutes after local midnight.
        minute: u32,
        /// The time zone.
        tz: chrono_tz::Tz,
        /// None before this instant (required when weekly).
        starting: Option<u64>,
        /// None at or after this instant.
        until: Option<u64>,
    },
}

/// Until when a [`Node::WaitUntilTime`] holds a user.
#[derive(Clone, Debug, PartialEq)]
pub enum Until {
    /// The next local time of day after arriving.
    Clock {
        /// Minutes after local midnight.
        minute: u32,
        /// The time zone when `tz_trait` gives none.
        tz: chrono_tz::Tz,
        /// A trait naming the user's time zone (an IANA name), read at arrival.
        tz_trait: Option<String>,
    },
    /// The instant a trait holds (epoch ms, or an RFC 3339 date-time or `YYYY-MM-DD` date in
    /// UTC), moved by `offset_ms` (negative: before it), read at arrival.
    Trait {
        /// The trait's key (a dot path).
        name: String,
        /// Added to the trait's instant.
        offset_ms: i64,
    },
}

/// An instant a trait value names: epoch ms (a whole number, not negative), an RFC 3339
/// date-time, or a `YYYY-MM-DD` date (midnight UTC).
pub fn instant_of(v: &crate::Value) -> Option<u64> {
    match v {
        crate::Value::Num(n) if n.0.fract() == 0.0 && n.0 >= 0.0 && n.0 <= 253_402_300_799_999.0 => Some(n.0 as u64),
        crate::Value::Str(s) => {
            let ms = match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(at) => at.timestamp_millis(),
                Err(_) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()?
                    .and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_millis(),
            };
            u64::try_from(ms).ok()
        }
        _ => None,
    }
}

impl Until {
    /// The traits read at arrival, if any.
    pub fn trait_read(&self) -> Option<&str> {
        match self {
            Until::Clock { tz_trait, .. } => tz_trait.as_deref(),
            Until::Trait { name, .. } => Some(name),
        }
    }

    /// For a user arriving at `t` whose trait (the one [`Until::trait_read`] names) is
    /// `value`: when they go on. A clock's next local time is strictly after `t` (one arriving
    /// exactly then waits a day), in the trait's zone when it names one, else in `tz`. A
    /// trait's instant may be at or before `t` (they go on at once). `None`: the trait holds
    /// no instant (the user goes to `if_missing`).
    pub fn due(&self, t: u64, value: Option<&crate::Value>) -> Option<u64> {
        match self {
            Until::Clock { minute, tz, .. } => {
                let named = match value {
                    Some(crate::Value::Str(s)) => s.parse::<chrono_tz::Tz>().ok(),
                    _ => None,
                };
                let tz = named.unwrap_or(*tz);
                let daily = Occurrences::Every { days: 1, minute: *minute, tz, starting: None, until: None };
                // A zone's local times all exist within a day and a half: there is one, but
                // past the calendar's end.
                Some(daily.first_from(t.saturating_add(1)).unwrap_or(u64::MAX))
            }
            Until::Trait { offset_ms, .. } => {
                let at = instant_of(value?)?;
                let due = i64::try_from(at).ok()?.checked_add(*offset_ms)?;
                Some(u64::try_from(due).unwrap_or(0))
            }
        }
    }
}

impl Occurrences {
    /// The first occurrence at or after `t` (epoch ms), if any. A local time that does not
    /// exist that day (a daylight-saving gap) is read with the offset in force before the gap
    /// (it lands as far past the gap's start: 02:30 in a 02:00-03:00 gap is 03:30); an
    /// ambiguous one is taken at its earlier instant. Instants outside what the calendar can
    /// hold have none.
    pub fn first_from(&self, t: u64) -> Option<u64> {
        use chrono::{Duration as D, NaiveTime, Offset, TimeZone};
        let (days, minute, tz, starting, until) = match self {
            Occurrences::Once(at) => return (*at >= t).then_some(*at),
            Occurrences::Every { days, minute, tz, starting, until } => (*days, *minute, tz, *starting, *until),
        };
        let from = t.max(starting.unwrap_or(0));
        // Checked all the way: a date past the calendar's end is no date, not a panic.
        let local_date = |ms: u64| {
            let utc = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)?.naive_utc();
            Some(utc.checked_add_offset(tz.offset_from_utc_datetime(&utc).fix())?.date())
        };
        let resolve = |date: chrono::NaiveDate| {
            let local = date.and_time(NaiveTime::MIN).checked_add_signed(D::minutes(i64::from(minute)))?;
            let at = match tz.from_local_datetime(&local).earliest() {
                Some(at) => at.naive_utc(),
                None => {
                    let before = tz.offset_from_utc_datetime(&local.checked_sub_signed(D::days(1))?).fix();
                    local.checked_sub_offset(before)?
                }
            };
            u64::try_from(at.and_utc().timestamp_millis()).ok()
        };
        // Weekly occurrences fall on the local weekday of `starting`.
        let anchor = match starting {
            Some(s) => local_date(s)?,
            None => local_date(0)?,
        };
        let mut date = local_date(from)?.pred_opt()?;
        for _ in 0..(days + 3) {
            let on_day = (date - anchor).num_days().rem_euclid(i64::from(days)) == 0;
            if let Some(at) = resolve(date).filter(|at| on_day && *at >= from) {
                return until.is_none_or(|u| at < u).then_some(at);
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// Stay for `duration`, then go to `next`.
    Wait {
        /// How long (positive).
        duration: Duration,
        /// Where to go afterwards.
        next: String,
    },
    /// Wait for a matching event for at most `timeout`.
    WaitUntil {
        /// The awaited event.
        event: EventFilter,
        /// How long to wait (positive); an event at exactly the timeout is too late.
        timeout: Duration,
        /// Where to go when the event comes.
        on_event: String,
        /// Where to go when it does not.
        on_timeout: String,
    },
    /// Stay until a time ([`Until`]), then go to `next`; without that time, to `if_missing`.
    WaitUntilTime {
        /// Until when.
        until: Until,
        /// Where to go then.
        next: String,
        /// Where to go when the trait holds no instant (required for [`Until::Trait`]).
        if_missing: Option<String>,
    },
    /// The first case whose condition holds for the user at this time, else `otherwise`.
    Branch {
        /// Tried in order.
        cases: Vec<Case>,
        /// When no case holds.
        otherwise: String,
    },
    /// A deterministic random split of users.
    Split {
        /// Shares in basis points (hundredths of a percent) summing to 10,000.
        branches: Vec<SplitBranch>,
    },
    /// Send a message, then go to `next`.
    Action {
        /// What to send.
        action: Action,
        /// Where to go afterwards.
        next: String,
    },
    /// The user has finished the journey.
    Exit,
}

impl Node {
    /// The node ids this node can move to, in the order they are written.
    pub fn targets(&self) -> Vec<&str> {
        match self {
            Node::Wait { next, .. } | Node::Action { next, .. } => vec![next],
            Node::WaitUntilTime { next, if_missing, .. } => {
                std::iter::once(next).chain(if_missing).map(|s| s.as_str()).collect()
            }
            Node::WaitUntil { on_event, on_timeout, .. } => vec![on_event, on_timeout],
            Node::Branch { cases, otherwise } => {
                cases.iter().map(|c| c.next.as_str()).chain(std::iter::once(otherwise.as_str())).collect()
            }
            Node::Split { branches } => branches.iter().map(|b| b.next.as_str()).collect(),
            Node::Exit => Vec::new(),
        }
    }

    /// Whether users stay at this node until a timer or an event (rather than passing through at once).
    pub fn waits(&self) -> bool {
        matches!(self, Node::Wait { .. } | Node::WaitUntil { .. } | Node::WaitUntilTime { .. })
    }

    /// The node kind as written in definitions.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Wait { .. } => "wait",
            Node::WaitUntil { .. } => "wait_until",
            Node::WaitUntilTime { .. } => "wait_until_time",
            Node::Branch { .. } => "branch",
            Node::Split { .. } => "split",
            Node::Action { .. } => "action",
            Node::Exit => "exit",
        }
    }
}

/// One case of a branch.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Evaluated for the user at the branch time.
    pub when: Condition,
    /// Where to go when it holds.
    pub next: String,
}

/// One share of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitBranch {
    /// Share in basis points (1% = 100).
    pub basis_points: u32,
    /// Where users of this share go.
    pub next: String,
}

/// A message to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// `email`, `sms`, `push`, `webhook` or any other channel name.
    pub channel: String,
    /// A template name for the channel.
    pub template: Option<String>,
    /// Free JSON passed through to the sink.
    pub payload: Option<serde_json::Value>,
}

/// Re-entry modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReEntryMode {
    /// At most one entry ever.
    Once,
    /// Again after leaving.
    AfterExit,
    /// Again at any time; a user already in the journey restarts at the start node.
    Always,
}

/// Whether and when a user may enter again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReEntry {
    /// The mode.
    pub mode: ReEntryMode,
    /// At most this many entries in all.
    pub max_times: Option<u64>,
    /// At least this long between two entries (measured between entry times).
    pub cooldown: Option<Duration>,
}

impl Default for ReEntry {
    fn default() -> Self {
        ReEntry { mode: ReEntryMode::Once, max_times: None, cooldown: None }
    }
}

/// When a journey accepts entries: from `start_at` (inclusive) to `end_at` (exclusive); at
/// `end_at` the journey ends and users still in it are canceled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Epoch ms.
    pub start_at: Option<u64>,
    /// Epoch ms.
    pub end_at: Option<u64>,
}

/// A daily window, `[start, end)` in local time of `tz`, wrapping past midnight when
/// `start > end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight.
    pub start_minute: u32,
    /// Minutes after local midnight.
    pub end_minute: u32,
    /// The time zone (UTC when not given).
    pub tz: chrono_tz::Tz,
}

impl QuietHours {
    /// When `t` (epoch ms) falls inside the window, the instant the window ends; otherwise `None`.
    /// A local end time that does not exist (a daylight-saving gap) is moved one hour later; an
    /// ambiguous one takes its earlier instant.
    pub fn release(&self, t: u64) -> Option<u64> {
        use chrono::{Duration as D, NaiveTime, Offset, TimeZone};
        let utc = chrono::DateTime::from_timestamp_millis(i64::try_from(t).ok()?)?.naive_utc();
        let local = utc.checked_add_offset(self.tz.offset_from_utc_datetime(&utc).fix())?;
        let minute_of_day = |m: u32| m * 60_000;
        let ms_of_day = local.time().signed_duration_since(NaiveTime::MIN).num_milliseconds() as u32;
        let (start, end) = (minute_of_day(self.start_minute), minute_of_day(self.end_minute));
        let day = local.date();
        let end_day = if start < end {
            if !(start..end).contains(&ms_of_day) {
                return None;
            }
            day
        } else if ms_of_day >= start {
            day.succ_opt()?
        } else if ms_of_day < end {
            day
        } else {
            return None;
        };
        let end_local = end_day.and_time(NaiveTime::MIN).checked_add_signed(D::minutes(i64::from(self.end_minute)))?;
        let resolved = self
            .tz
            .from_local_datetime(&end_local)
            .earliest()
            .or_else(|| self.tz.from_local_datetime(&(end_local + D::hours(1))).earliest())?;
        u64::try_from(resolved.timestamp_millis()).ok().filter(|r| *r > t)
    }
}

/// At most `max_actions` sent actions per user in any trailing window of `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrequencyCap {
    /// The cap (at least 1).
    pub max_actions: u64,
    /// The window (positive).
    pub per: Duration,
}

/// A journey's quota: at most `max_actions` sent actions over all its users (of `channel`
/// only, if given), in all (`per` absent) or in any trailing `per`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// The quota (at least 1).
    pub max_actions: u64,
    /// The window (positive), if any.
    pub per: Option<Duration>,
    /// The channel counted, if not all.
    pub channel: Option<String>,
}

/// Where a user falls in a split, in basis points `[0, 10000)`: XXH3-64 of the journey id, a
/// zero byte, the node id, a zero byte, and the user's key (XXH3-128 of the user id, 16 bytes
/// little-endian). Stable across runs, workers and machines.
pub fn split_point(journey: &str, node: &str, user: Key) -> u32 {
    let mut bytes = Vec::with_capacity(journey.len() + node.len() + 18);
    bytes.extend_from_slice(journey.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(node.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&user.0.to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&bytes) % 10_000) as u32
}

/// The deterministic id of an action: XXH3-128 (32 hex digits) of the journey id, a zero byte,
/// the version (4 bytes LE), the user's key (16 bytes LE), the node id, a zero byte, and the
/// time the user reached the node (8 bytes LE). A held action and its later sending share it.
pub fn action_id(journey: &str, version: u32, user: Key, node: &str, reached: u64) -> String {
    let mut bytes = Vec::with_capacity(journey.len() + node.len() + 30);
    bytes.extend_from_slice(journey.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&user.0.to_le_bytes());
    bytes.extend_from_slice(node.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&reached.to_le_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_instant_str;

    fn at(s: &str) -> u64 {
        parse_instant_str(s).unwrap()
    }

    #[test]
    fn a_daily_occurrence_keeps_its_local_time_across_daylight_saving_changes() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let daily = Occurrences::Every { days: 1, minute: 9 * 60, tz: paris, starting: None, until: None };
        // Winter (UTC+1), the day of the change to summer time (UTC+2), and after it.
        assert_eq!(daily.first_from(at("2025-03-29T00:00:00Z")), Some(at("2025-03-29T08:00:00Z")));
        assert_eq!(daily.first_from(at("2025-03-29T08:00:00.001Z")), Some(at("2025-03-30T07:00:00Z")));
        assert_eq!(daily.first_from(at("2025-03-30T07:00:00Z")), Some(at("2025-03-30T07:00:00Z")));
        // Back to winter time on 26 October.
        assert_eq!(daily.first_from(at("2025-10-25T07:00:01Z")), Some(at("2025-10-26T08:00:00Z")));
        // 02:30 does not exist on 30 March (taken at 03:30 summer time); on 26 October it is
        // ambiguous (taken at its first instant).
        let night = Occurrences::Every { days: 1, minute: 150, tz: paris, starting: None, until: None };
        assert_eq!(night.first_from(at("2025-03-29T02:00:00Z")), Some(at("2025-03-30T01:30:00Z")));
        assert_eq!(night.first_from(at("2025-10-25T02:00:00Z")), Some(at("2025-10-26T00:30:00Z")));
    }

    #[test]
    fn times_past_the_calendar_have_no_occurrence_and_no_panic() {
        let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        let daily =
            Occurrences::Every { days: 1, minute: 540, tz: tokyo, starting: Some(8_210_298_412_799_999), until: None };
        assert_eq!(daily.first_from(0), None);
        assert_eq!(daily.first_from(u64::MAX), None);
        let quiet = QuietHours { start_minute: 0, end_minute: 60, tz: tokyo };
        assert_eq!(quiet.release(8_210_298_412_799_999), None);
        let wait = Until::Clock { minute: 540, tz: tokyo, tz_trait: None };
        assert_eq!(wait.due(8_210_298_412_799_999, None), Some(u64::MAX));
    }

    #[test]
    fn a_clock_reads_the_zone_a_trait_names_and_a_trait_instant_moves_by_its_offset() {
        use crate::Value;
        let clock = Until::Clock { minute: 540, tz: chrono_tz::UTC, tz_trait: Some("timezone".into()) };
        let t = at("2025-03-29T12:00:00Z");
        let paris = Value::Str("Europe/Paris".into());
        // The day after, Paris is on summer time: 09:00 is 07:00 UTC.
        assert_eq!(clock.due(t, Some(&paris)), Some(at("2025-03-30T07:00:00Z")));
        // No zone, or not one: the node's own.
        assert_eq!(clock.due(t, None), Some(at("2025-03-30T09:00:00Z")));
        assert_eq!(clock.due(t, Some(&Value::Str("Mars/Olympus".into()))), Some(at("2025-03-30T09:00:00Z")));
        let trial = Until::Trait { name: "trial_ends_at".into(), offset_ms: -3 * 86_400_000 };
        let ends = Value::Str("2025-04-10T00:00:00Z".into());
        assert_eq!(trial.due(t, Some(&ends)), Some(at("2025-04-07T00:00:00Z")));
        assert_eq!(trial.due(t, Some(&Value::Str("2025-04-10".into()))), Some(at("2025-04-07T00:00:00Z")));
        let ms = Value::Num(crate::Num(at("2025-04-10T00:00:00Z") as f64));
        assert_eq!(trial.due(t, Some(&ms)), Some(at("2025-04-07T00:00:00Z")));
        assert_eq!(trial.due(t, Some(&Value::Num(crate::Num(1.0)))), Some(0));
        for bad in
            [Value::Str("soon".into()), Value::Num(crate::Num(-5.0)), Value::Num(crate::Num(1.5)), Value::Bool(true)]
        {
            assert_eq!(trial.due(t, Some(&bad)), None, "{bad:?}");
        }
        assert_eq!(trial.due(t, None), None);
    }

    #[test]
    fn a_gap_longer_than_an_hour_is_crossed_with_the_offset_before_it() {
        // Troll (Antarctica) goes from UTC+0 to UTC+2 at 01:00 UTC on the last Sunday of March:
        // 02:00 local that day does not exist, and is read as 02:00 UTC+0 (04:00 local).
        let troll: chrono_tz::Tz = "Antarctica/Troll".parse().unwrap();
        let weekly = Occurrences::Every {
            days: 7,
            minute: 120,
            tz: troll,
            starting: Some(at("2025-03-23T00:00:00Z")),
            until: None,
        };
        assert_eq!(weekly.first_from(at("2025-03-24T00:00:00Z")), Some(at("2025-03-30T02:00:00Z")));
        assert_eq!(weekly.first_from(at("2025-03-30T02:00:00.001Z")), Some(at("2025-04-06T00:00:00Z")));
    }

    #[test]
    fn weekly_occurrences_fall_on_the_weekday_of_starting_until_the_end() {
        // Starting on a Wednesday at noon UTC: 09:00 that Wednesday has passed.
        let weekly = Occurrences::Every {
            days: 7,
            minute: 9 * 60,
            tz: chrono_tz::UTC,
            starting: Some(at("2025-01-01T12:00:00Z")),
            until: Some(at("2025-01-22T09:00:00Z")),
        };
        assert_eq!(weekly.first_from(0), Some(at("2025-01-08T09:00:00Z")));
        assert_eq!(weekly.first_from(at("2025-01-08T09:00:00.001Z")), Some(at("2025-01-15T09:00:00Z")));
        assert_eq!(weekly.first_from(at("2025-01-15T09:00:00.001Z")), None, "until is not included");
        let once = Occurrences::Once(at("2025-02-01T09:00:00Z"));
        assert_eq!(once.first_from(0), Some(at("2025-02-01T09:00:00Z")));
        assert_eq!(once.first_from(at("2025-02-01T09:00:00.001Z")), None);
    }

    #[test]
    fn quiet_hours_wrap_past_midnight() {
        let q = QuietHours { start_minute: 22 * 60, end_minute: 8 * 60, tz: chrono_tz::UTC };
        assert_eq!(q.release(at("2024-03-01T23:30:00Z")), Some(at("2024-03-02T08:00:00Z")));
        assert_eq!(q.release(at("2024-03-02T07:59:59.999Z")), Some(at("2024-03-02T08:00:00Z")));
        assert_eq!(q.release(at("2024-03-02T08:00:00Z")), None);
        assert_eq!(q.release(at("2024-03-01T21:59:59Z")), None);
        assert_eq!(q.release(at("2024-03-01T22:00:00Z")), Some(at("2024-03-02T08:00:00Z")));
    }

    #[test]
    fn quiet_hours_in_a_time_zone_across_daylight_saving() {
        let q = QuietHours { start_minute: 22 * 60, end_minute: 8 * 60, tz: chrono_tz::Europe::Paris };
        // 23:00 UTC on 30 March 2024 is 00:00 in Paris (CET); clocks go to CEST that night,
        // so 08:00 local on the 31st is 06:00 UTC.
        assert_eq!(q.release(at("2024-03-30T23:00:00Z")), Some(at("2024-03-31T06:00:00Z")));
        // A window in the day, not wrapping.
        let day = QuietHours { start_minute: 12 * 60, end_minute: 13 * 60, tz: chrono_tz::UTC };
        assert_eq!(day.release(at("2024-03-01T12:10:00Z")), Some(at("2024-03-01T13:00:00Z")));
        assert_eq!(day.release(at("2024-03-01T13:10:00Z")), None);
    }

    #[test]
    fn quiet_hours_ending_in_a_gap_move_an_hour_later() {
        // New York springs forward at 02:00 on 10 March 2024: 02:30 local does not exist.
        let q = QuietHours { start_minute: 60, end_minute: 150, tz: chrono_tz::America::New_York };
        // 06:10 UTC is 01:10 EST, inside the window; 03:30 EDT is 07:30 UTC.
        assert_eq!(q.release(at("2024-03-10T06:10:00Z")), Some(at("2024-03-10T07:30:00Z")));
    }

    #[test]
    fn split_points_are_stable_and_spread() {
        let p = split_point("j", "s", Key::of("u1"));
        assert_eq!(p, split_point("j", "s", Key::of("u1")));
        assert!(p < 10_000);
        let low = (0..10_000).filter(|i| split_point("j", "s", Key::of(&format!("u{i}"))) < 5_000).count();
        assert!((4_700..=5_300).contains(&low), "{low} of 10000 below the median");
    }

    #[test]
    fn action_ids_differ_in_every_part() {
        let base = action_id("j", 1, Key::of("u"), "n", 5);
        for other in [
            action_id("k", 1, Key::of("u"), "n", 5),
            action_id("j", 2, Key::of("u"), "n", 5),
            action_id("j", 1, Key::of("v"), "n", 5),
            action_id("j", 1, Key::of("u"), "m", 5),
            action_id("j", 1, Key::of("u"), "n", 6),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base.len(), 32);
    }
}
