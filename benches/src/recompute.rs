//! The from-scratch baseline: segment membership at a time `T` computed by looking at every
//! event at or before `T`, user by user, with no state kept between evaluations (what a
//! batch system re-running a query does): the timing baseline. It shares the event decoder
//! and the definition types with the engine but none of its dataflow; the benchmark checks
//! the engine's segment sizes against it, and who the members are against the independent
//! reference (`crate::reference`).

use journeyflow_types::{AggFn, Condition, Event, EventFilter, Key, Kind, Op, SegmentDefinition, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Deduplicated events grouped by user, each user's in `(ts, messageId)` order.
pub struct History {
    users: Vec<(Key, Vec<Event>)>,
}

impl History {
    /// Drops repeated message ids (a repeat within `dedup_window` of the first, in time
    /// order, is a duplicate) and groups the rest by user.
    pub fn new(mut events: Vec<Event>, dedup_window: u64) -> History {
        events.sort_unstable_by(|a, b| (a.ts, &a.message_id).cmp(&(b.ts, &b.message_id)));
        let mut first: HashMap<String, u64> = HashMap::with_capacity(events.len());
        let mut by_user: HashMap<Key, Vec<Event>> = HashMap::new();
        for e in events {
            match first.get(&e.message_id) {
                Some(&t) if e.ts - t <= dedup_window => continue,
                _ => {
                    first.insert(e.message_id.clone(), e.ts);
                }
            }
            by_user.entry(e.user).or_default().push(e);
        }
        let mut users: Vec<(Key, Vec<Event>)> = by_user.into_iter().collect();
        users.sort_unstable_by_key(|(k, _)| *k);
        History { users }
    }

    /// Number of users with at least one event.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Members of every segment at `t`, by segment id.
    pub fn members(&self, defs: &[SegmentDefinition], t: u64) -> BTreeMap<String, Vec<Key>> {
        let by_id: HashMap<&str, &SegmentDefinition> = defs.iter().map(|d| (d.id.as_str(), d)).collect();
        let mut out: BTreeMap<String, Vec<Key>> = defs.iter().map(|d| (d.id.clone(), Vec::new())).collect();
        for (user, events) in &self.users {
            let upto = events.partition_point(|e| e.ts <= t);
            if upto == 0 {
                continue;
            }
            let user_view = UserView { events: &events[..upto], t, defs: &by_id };
            for d in defs {
                if user_view.holds(&d.condition) {
                    out.get_mut(&d.id).expect("every id has an entry").push(*user);
                }
            }
        }
        out
    }
}

/// One user's events at or before `t`.
struct UserView<'a> {
    events: &'a [Event],
    t: u64,
    defs: &'a HashMap<&'a str, &'a SegmentDefinition>,
}

fn matches(filter: &EventFilter, e: &Event) -> bool {
    e.kind != Kind::Identify
        && e.name == filter.event
        && filter.predicates.iter().all(|p| p.op.test(e.props.get(&p.path), p.value.as_ref()))
}

fn micros(x: f64) -> i128 {
    (x * 1e6).round() as i64 as i128
}

impl UserView<'_> {
    fn in_window(&self, ts: u64, within: Option<u64>) -> bool {
        within.is_none_or(|w| ts + w > self.t)
    }

    fn holds(&self, c: &Condition) -> bool {
        match c {
            Condition::All(cs) => cs.iter().all(|c| self.holds(c)),
            Condition::Any(cs) => cs.iter().any(|c| self.holds(c)),
            Condition::Not(c) => !self.holds(c),
            Condition::InSegment(id) => self.defs.get(id.as_str()).is_some_and(|d| self.holds(&d.condition)),
            Condition::Trait(p) => {
                let mut value: Option<&Value> = None;
                for e in self.events.iter().filter(|e| e.kind == Kind::Identify) {
                    if let Some(v) = e.props.get(&p.path) {
                        value = (*v != Value::Null).then_some(v);
                    }
                }
                p.op.test(value, p.value.as_ref())
            }
            Condition::Performed(p) => {
                let within = p.within.map(|w| w.0);
                let n =
                    self.events.iter().filter(|e| self.in_window(e.ts, within) && matches(&p.filter, e)).count() as u64;
                n >= p.at_least && p.at_most.is_none_or(|m| n <= m)
            }
            Condition::Aggregate(a) => {
                let within = a.within.map(|w| w.0);
                let values: Vec<&Value> = self
                    .events
                    .iter()
                    .filter(|e| self.in_window(e.ts, within) && matches(&a.filter, e))
                    .filter_map(|e| e.props.get(&a.property).filter(|v| **v != Value::Null))
                    .collect();
                let numbers: Vec<i128> = values.iter().filter_map(|v| v.as_f64()).map(micros).collect();
                let (num, den) = match a.func {
                    AggFn::CountDistinct if !values.is_empty() => {
                        (values.iter().collect::<HashSet<_>>().len() as i128 * 1_000_000, 1)
                    }
                    AggFn::Sum if !numbers.is_empty() => (numbers.iter().sum(), 1),
                    AggFn::Avg if !numbers.is_empty() => (numbers.iter().sum(), numbers.len() as i128),
                    AggFn::Min if !numbers.is_empty() => (*numbers.iter().min().expect("not empty"), 1),
                    AggFn::Max if !numbers.is_empty() => (*numbers.iter().max().expect("not empty"), 1),
                    _ => return false,
                };
                let ordering = num.cmp(&(micros(a.value) * den));
                match a.op {
                    Op::Eq => ordering.is_eq(),
                    Op::Ne => ordering.is_ne(),
                    Op::Gt => ordering.is_gt(),
                    Op::Gte => ordering.is_ge(),
                    Op::Lt => ordering.is_lt(),
                    Op::Lte => ordering.is_le(),
                    _ => false,
                }
            }
            Condition::Sequence(s) => {
                let (within, min_age) = (s.within.0, s.min_age.0);
                let last_ok = |i: usize| {
                    let last = &self.events[i];
                    last.ts + min_age <= self.t
                        && !s
                            .then_not
                            .as_ref()
                            .is_some_and(|f| self.events[i + 1..].iter().any(|e| e.ts > last.ts && matches(f, e)))
                };
                // Greedy is not enough (a later chain may be the one whose last step is old
                // enough and unanswered): try every chain, depth first.
                fn chain(view: &UserView<'_>, steps: &[EventFilter], from: usize, ok: &dyn Fn(usize) -> bool) -> bool {
                    let Some((step, rest)) = steps.split_first() else { return false };
                    (from..view.events.len()).any(|i| {
                        matches(step, &view.events[i])
                            && if rest.is_empty() { ok(i) } else { chain(view, rest, i + 1, ok) }
                    })
                }
                self.events.iter().enumerate().any(|(i, first)| {
                    first.ts + within > self.t
                        && matches(&s.steps[0], first)
                        && if s.steps.len() == 1 { last_ok(i) } else { chain(self, &s.steps[1..], i + 1, &last_ok) }
                })
            }
        }
    }
}
