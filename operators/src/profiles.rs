//! `profiles`: what is kept of each user: whether they are in the universe (some event of
//! theirs is retained) and their merged traits (per key, the value of the latest identify
//! carrying it, by `(timestamp, messageId)`; a `null` removes the key). A user is forgotten,
//! traits and all, at the first instant none of their events is retained; their next event
//! starts a new profile. An identify that expires while the user stays retained leaves its
//! traits in place. Without retractions (no retention) this is every user ever seen with every
//! trait ever set.
//!
//! Updates are held until the frontier passes their time and then applied a user at a time, so
//! the output never depends on batching; only changes leave the operator.

use crate::held::Held;
use crate::{SharedEvent, Time, UserId, Users};
use differential_dataflow::{AsCollection, VecCollection};
use journeyflow_types::{KeyMap, Kind, Value};
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;

/// Every user's current traits: `((user, trait name), value)`.
pub type Traits<'s> = VecCollection<'s, Time, ((UserId, String), Value)>;

/// The order of identify calls: `(timestamp, messageId)`.
type Order = (Time, String);

/// One user's profile.
#[derive(Default)]
struct Profile {
    /// Retained events (their multiplicities summed).
    retained: isize,
    /// Per trait key, the order of the identify that set it last and the value (`None`: removed).
    traits: BTreeMap<String, (Order, Option<Value>)>,
}

/// A change leaving the operator: the user's presence (`None`) or one trait's value.
type Change = (UserId, Option<(String, Value)>);

/// The universe and the traits of the users of `events` (insertions at arrival, retractions
/// when the events are no longer retained).
pub fn profiles<'s>(events: VecCollection<'s, Time, SharedEvent>) -> (Users<'s>, Traits<'s>) {
    let exchange = Exchange::new(|(e, _, _): &(SharedEvent, Time, isize)| e.user().0 as u64);
    type Output = timely::container::CapacityContainerBuilder<Vec<(Change, Time, isize)>>;
    let changes = events.inner.unary_frontier::<Output, _, _, _>(exchange, "Profiles", move |_, _| {
        // Only identify calls are held whole: of other events, only the count matters.
        let mut held: Held<(UserId, Option<SharedEvent>, isize)> = Held::default();
        let mut users: KeyMap<Profile> = KeyMap::default();
        let (mut group, mut out) = (Vec::new(), Vec::new());
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let updates =
                    data.drain(..).map(|(e, t, r)| (t, (e.user(), (e.kind() == Kind::Identify).then_some(e), r)));
                held.hold(&cap, updates)
            });
            let Some((cap, complete)) = held.take_complete(frontier) else { return };
            // Sorted by `(time, user, event)`: each user's updates of one time together, their
            // identify calls in `(timestamp, messageId)` order.
            let mut updates = complete.into_iter().peekable();
            while let Some((time, (user, event, diff))) = updates.next() {
                group.push((event, diff));
                while let Some((_, (_, e, r))) = updates.next_if(|(t, (u, _, _))| (*t, *u) == (time, user)) {
                    group.push((e, r));
                }
                apply(&mut users, user, time, group.drain(..), &mut out);
            }
            output.session(&cap).give_iterator(out.drain(..));
        }
    });
    let universe =
        changes.clone().flat_map(|((user, t), time, r)| t.is_none().then_some((user, time, r))).as_collection();
    let traits =
        changes.flat_map(|((user, t), time, r)| t.map(|(key, value)| (((user, key), value), time, r))).as_collection();
    (universe, traits)
}

/// Applies one user's updates of one time and records what changed.
fn apply(
    users: &mut KeyMap<Profile>,
    user: UserId,
    time: Time,
    group: impl Iterator<Item = (Option<SharedEvent>, isize)>,
    out: &mut Vec<(Change, Time, isize)>,
) {
    let profile = users.entry(user).or_default();
    let present = profile.retained > 0;
    // The value before this time of each key an identify here may set.
    let mut before: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for (identify, diff) in group {
        profile.retained += diff;
        let Some(event) = identify.filter(|_| diff > 0) else { continue };
        let order = (event.ts(), event.message_id().to_string());
        for (key, value) in event.props() {
            let current = profile.traits.get(key);
            if current.is_some_and(|(o, _)| *o >= order) {
                continue;
            }
            before.entry(key.to_string()).or_insert_with(|| current.and_then(|(_, v)| v.clone()));
            let value = value.to_value();
            profile.traits.insert(key.to_string(), (order.clone(), (value != Value::Null).then_some(value)));
        }
    }
    if profile.retained <= 0 {
        // Forgotten: everything it had before this time goes.
        if let Some(profile) = users.remove(&user) {
            for (key, (_, value)) in profile.traits {
                let old = before.remove(&key).unwrap_or(value);
                out.extend(old.map(|old| ((user, Some((key, old))), time, -1)));
            }
        }
        if present {
            out.push(((user, None), time, -1));
        }
        return;
    }
    if !present {
        out.push(((user, None), time, 1));
    }
    for (key, old) in before {
        let new = profile.traits.get(&key).and_then(|(_, v)| v.clone());
        if old != new {
            out.extend(old.map(|old| ((user, Some((key.clone(), old))), time, -1)));
            out.extend(new.map(|new| ((user, Some((key, new))), time, 1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retain::retain;
    use crate::testing::drive;
    use journeyflow_types::{Key, Props, Record};

    fn event(ts: Time, user: &str, kind: Kind, traits: &[(&str, Option<&str>)]) -> Record {
        let value = |v: &Option<&str>| v.map_or(Value::Null, |v| Value::Str(v.into()));
        let props = Props(traits.iter().map(|(k, v)| (k.to_string(), value(v))).collect());
        let name = if kind == Kind::Identify { "" } else { "View" };
        crate::testing::event(ts, user, kind, name, format!("{user}-{ts}"), props)
    }

    fn identify(ts: Time, user: &str, traits: &[(&str, Option<&str>)]) -> Record {
        event(ts, user, Kind::Identify, traits)
    }

    fn track(ts: Time, user: &str) -> Record {
        event(ts, user, Kind::Track, &[])
    }

    /// A change: `(time, user, trait, value, diff)`, the trait and value empty for the universe.
    type Row = (Time, String, String, String, isize);

    fn row(time: Time, user: &str, key: &str, value: &str, diff: isize) -> Row {
        (time, user.into(), key.into(), value.into(), diff)
    }

    /// The universe's and the traits' changes for events entered at their own times and
    /// retained for 100 (users "a" and "b"), sorted.
    fn run(events: Vec<Record>) -> Vec<Row> {
        run_deleting(events.into_iter().map(|e| (e.ts(), Ok(e))).collect())
    }

    /// As `run`, with deletions of users (`Err`) at the given times.
    fn run_deleting(inputs: Vec<(Time, crate::testing::Entered)>) -> Vec<Row> {
        let updates = inputs.into_iter().map(|(t, e)| (e, t, 1)).collect();
        let name = |u: &UserId| if *u == Key::of("a") { "a".to_string() } else { "b".to_string() };
        let changes = drive(updates, 1_000, move |inputs| {
            let records = inputs.clone().flat_map(|i| i.ok());
            let deletions = inputs.flat_map(|i| i.err());
            let (universe, traits) =
                profiles(retain(records, deletions, Some(100), Default::default(), Default::default()));
            let traits = traits.map(move |((u, k), v)| match v {
                Value::Str(v) => (name(&u), k, v),
                other => panic!("string traits only, not {other:?}"),
            });
            universe.map(move |u| (name(&u), String::new(), String::new())).concat(traits)
        });
        let mut rows: Vec<Row> = changes.into_iter().map(|((u, k, v), t, r)| (t, u, k, v, r)).collect();
        rows.sort();
        rows
    }

    #[test]
    fn traits_live_while_any_event_of_the_user_is_retained_and_go_with_the_last() {
        let rows = run(vec![
            identify(10, "a", &[("plan", Some("pro"))]),
            track(10, "b"),
            track(50, "a"),
            // Touching end to end (retained until 110, then from 110): never forgotten between.
            track(110, "b"),
            // At 110 the first identify expires; the track of 50 keeps the user and the plan.
            identify(120, "a", &[("country", Some("FR")), ("plan", None)]),
        ]);
        let mut expected = vec![
            row(10, "a", "", "", 1),
            row(10, "a", "plan", "pro", 1),
            row(10, "b", "", "", 1),
            row(120, "a", "country", "FR", 1),
            row(120, "a", "plan", "pro", -1),
            // The identify of 120 is retained until 220: the user and the country go then.
            row(220, "a", "", "", -1),
            row(220, "a", "country", "FR", -1),
            row(210, "b", "", "", -1),
        ];
        expected.sort();
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_forgotten_user_comes_back_with_none_of_the_old_traits() {
        let rows =
            run(vec![identify(10, "a", &[("plan", Some("pro"))]), identify(300, "a", &[("country", Some("FR"))])]);
        let expected = vec![
            row(10, "a", "", "", 1),
            row(10, "a", "plan", "pro", 1),
            row(110, "a", "", "", -1),
            row(110, "a", "plan", "pro", -1),
            row(300, "a", "", "", 1),
            row(300, "a", "country", "FR", 1),
            row(400, "a", "", "", -1),
            row(400, "a", "country", "FR", -1),
        ];
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_deleted_user_leaves_with_every_trait_and_comes_back_only_with_new_events() {
        let a = Key::of("a");
        let rows = run_deleting(vec![
            (10, Ok(identify(10, "a", &[("plan", Some("pro"))]))),
            (20, Ok(track(20, "b"))),
            (30, Ok(track(30, "a"))),
            (40, Err((a, crate::retain::Erase::Delete))),
            (60, Ok(identify(60, "a", &[("country", Some("FR"))]))),
        ]);
        let mut expected = vec![
            row(10, "a", "", "", 1),
            row(10, "a", "plan", "pro", 1),
            row(20, "b", "", "", 1),
            row(40, "a", "", "", -1),
            row(40, "a", "plan", "pro", -1),
            row(60, "a", "", "", 1),
            row(60, "a", "country", "FR", 1),
            row(120, "b", "", "", -1),
            row(160, "a", "", "", -1),
            row(160, "a", "country", "FR", -1),
        ];
        expected.sort();
        assert_eq!(rows, expected);
    }
}
