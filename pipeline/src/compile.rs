//! Turns validated segment definitions into differential dataflow: one membership
//! collection per segment over the shared (deduplicated) events. Shared pieces, the universe
//! of users and their latest traits, are built once per dataflow; an imported events
//! arrangement is read once per event name the definitions name.

use crate::programs::TraitsTrace;
use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::wrappers::frontier::TraceFrontier;
use differential_dataflow::VecCollection;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::latest::latest;
use journeyflow_operators::select::{select, EventsTrace};
use journeyflow_operators::sequence::{sequence, SequenceEvent, SequenceSpec};
use journeyflow_operators::{aggregate, complement, intersect, union, window_count, SharedEvent, Time, UserId, Users};
use journeyflow_types::{Condition, EventFilter, Kind, Value, ValueRef};
use std::collections::HashMap;
use timely::dataflow::operators::vec::Map;

/// The latest traits of every user: `((user, trait name), value)`.
pub type Traits<'s> = VecCollection<'s, Time, ((UserId, String), Value)>;

/// An import of the events arrangement into a program's dataflow.
pub type ImportedEvents<'s> = Arranged<'s, TraceFrontier<EventsTrace>>;

/// An import of the traits arrangement into a program's dataflow.
pub type ImportedTraits<'s> = Arranged<'s, TraceFrontier<TraitsTrace>>;

/// Where a compiler reads traits.
enum TraitsSource<'s> {
    /// Derived from the events (the base dataflow), once asked for.
    Derived(Option<Traits<'s>>),
    /// An import of the traits arrangement, read in place.
    Imported(ImportedTraits<'s>),
}

/// Where a compiler reads events.
enum Events<'s> {
    /// Every event, as a collection: the base dataflow, which derives the universe and traits.
    All(VecCollection<'s, Time, SharedEvent>),
    /// An import of the events arrangement, read by name.
    Imported(ImportedEvents<'s>),
}

/// Builds membership collections for definitions over one event collection.
pub struct Compiler<'s> {
    events: Events<'s>,
    universe: Option<Users<'s>>,
    traits: TraitsSource<'s>,
    segments: HashMap<String, Users<'s>>,
}

impl<'s> Compiler<'s> {
    /// A compiler over deduplicated events.
    pub fn new(events: VecCollection<'s, Time, SharedEvent>) -> Self {
        let traits = TraitsSource::Derived(None);
        Compiler { events: Events::All(events), universe: None, traits, segments: HashMap::new() }
    }

    /// A compiler over events imported into a program's dataflow, with the shared universe,
    /// traits, and the memberships of the segments it may refer to.
    pub fn over(
        events: ImportedEvents<'s>,
        universe: Users<'s>,
        traits: ImportedTraits<'s>,
        segments: HashMap<String, Users<'s>>,
    ) -> Self {
        let traits = TraitsSource::Imported(traits);
        Compiler { events: Events::Imported(events), universe: Some(universe), traits, segments }
    }

    /// `logic` applied to the events named one of `names` (and, in the base dataflow, to every
    /// other event too: `logic` must reject what it does not read).
    pub fn select<D, L>(&self, names: &[&str], mut logic: L) -> VecCollection<'s, Time, D>
    where
        D: differential_dataflow::Data,
        L: FnMut(&SharedEvent) -> Option<D> + 'static,
    {
        match &self.events {
            Events::All(all) => all.clone().flat_map(move |e| logic(&e)),
            Events::Imported(arranged) => select(arranged.clone(), names, logic),
        }
    }

    /// `logic` applied to the events some filter may match.
    fn matching<D, L>(&self, filters: &[&EventFilter], logic: L) -> VecCollection<'s, Time, D>
    where
        D: differential_dataflow::Data,
        L: FnMut(&SharedEvent) -> Option<D> + 'static,
    {
        let names: Vec<&str> = filters.iter().map(|f| f.event.as_str()).collect();
        self.select(&names, logic)
    }

    /// Every event, for what only the base dataflow derives from them (a compiler over imports
    /// is given the universe and traits, and derives neither).
    fn all_events(&self) -> VecCollection<'s, Time, SharedEvent> {
        match &self.events {
            Events::All(all) => all.clone(),
            Events::Imported(arranged) => select(arranged.clone(), &[], |_| None),
        }
    }

    /// Every user with at least one event at or before the current time.
    pub fn universe(&mut self) -> Users<'s> {
        if self.universe.is_none() {
            let firsts = self.all_events().inner.map(|(e, t, r)| ((e.user(), (), Some(())), t, r));
            self.universe = Some(latest(firsts).map(|(user, ())| user));
        }
        self.universe.clone().expect("just built")
    }

    /// Each user's current merged traits: per key, the value of the latest identify carrying
    /// it (by `(timestamp, messageId)`); a `null` removes the key.
    pub fn traits(&mut self) -> Traits<'s> {
        if let TraitsSource::Imported(arranged) = &self.traits {
            return arranged.clone().as_collection(|k, v| (k.clone(), v.clone()));
        }
        if let TraitsSource::Derived(Some(traits)) = &self.traits {
            return traits.clone();
        }
        let upserts = self.all_events().inner.flat_map(|(e, t, r)| {
            let updates: Vec<(String, Value)> = if e.kind() == Kind::Identify {
                e.props().map(|(key, value)| (key.to_string(), value.to_value())).collect()
            } else {
                Vec::new()
            };
            let (user, order) = (e.user(), (e.ts(), e.message_id().to_string()));
            updates.into_iter().map(move |(key, value)| {
                let value = (value != Value::Null).then_some(value);
                (((user, key), order.clone(), value), t, r)
            })
        });
        let traits = latest(upserts);
        self.traits = TraitsSource::Derived(Some(traits.clone()));
        traits
    }

    /// Users whose trait `name` has a value for which `keep` holds (an import is read in place,
    /// without copying the traits it passes over).
    fn trait_users<F>(&mut self, name: String, keep: F) -> Users<'s>
    where
        F: Fn(&Value) -> bool + 'static,
    {
        match &self.traits {
            TraitsSource::Imported(arranged) => {
                arranged.clone().flat_map_ref(move |(user, key), value| (*key == name && keep(value)).then_some(*user))
            }
            TraitsSource::Derived(_) => {
                self.traits().filter(move |((_, key), value)| *key == name && keep(value)).map(|((user, _), _)| user)
            }
        }
    }

    /// An empty set of users in this dataflow.
    fn empty(&self) -> Users<'s> {
        self.select(&[], |_| None)
    }

    /// The membership changes of a journey's conditions, tagged with their index and consolidated.
    pub fn journey_conditions(&mut self, plan: &JourneyPlan) -> VecCollection<'s, Time, (u32, UserId)> {
        let tagged: Vec<_> =
            plan.conditions.iter().enumerate().map(|(i, c)| self.condition(c).map(move |u| (i as u32, u))).collect();
        let none = self.empty().map(|u| (0u32, u));
        none.concatenate(tagged).consolidate()
    }

    /// The users for whom a condition holds (references to segments compiled before).
    pub fn condition(&mut self, condition: &Condition) -> Users<'s> {
        match condition {
            Condition::All(cs) => {
                let sets = cs.iter().map(|c| self.condition(c)).collect();
                intersect::intersect(sets)
            }
            Condition::Any(cs) => {
                let sets = cs.iter().map(|c| self.condition(c)).collect();
                union::union(sets)
            }
            Condition::Not(c) => {
                let inner = self.condition(c);
                complement::complement(self.universe(), inner)
            }
            // Validation guarantees references resolve and come first.
            Condition::InSegment(id) => self.segments.get(id).cloned().unwrap_or_else(|| self.empty()),
            Condition::Trait(p) => {
                let p = p.clone();
                if p.op == journeyflow_types::Op::NotExists {
                    let name = p.path.clone();
                    let having = self.trait_users(name, |_| true);
                    complement::complement(self.universe(), having)
                } else {
                    self.trait_users(p.path.clone(), move |v| p.test(Some(v)))
                }
            }
            Condition::Performed(p) => {
                let filter = p.filter.clone();
                let matches = self.matching(&[&p.filter], move |e| filter.matches(e).then(|| (e.user(), e.ts())));
                let window = p.within.map(|w| w.0);
                match (p.at_least, p.at_most) {
                    (0, None) => self.universe(),
                    // At most m: not at least m + 1.
                    (0, Some(m)) => {
                        let over = window_count::window_count(matches, window, m + 1, None);
                        complement::complement(self.universe(), over)
                    }
                    (least, most) => window_count::window_count(matches, window, least, most),
                }
            }
            Condition::Aggregate(a) => {
                let (filter, property) = (a.filter.clone(), a.property.clone());
                let values = self.matching(&[&a.filter], move |e| {
                    if !filter.matches(e) {
                        return None;
                    }
                    let value = e.prop(&property).filter(|v| *v != ValueRef::Null)?.to_value();
                    Some(((e.user(), value), e.ts()))
                });
                aggregate::aggregate(values, a.within.map(|w| w.0), a.func, a.op, a.value)
            }
            Condition::Sequence(s) => {
                let (steps, then_not) = (s.steps.clone(), s.then_not.clone());
                let read: Vec<&EventFilter> = s.steps.iter().chain(&s.then_not).collect();
                let events = self.matching(&read, move |e| {
                    let mask =
                        steps.iter().enumerate().filter(|(_, f)| f.matches(e)).fold(0u64, |m, (i, _)| m | 1 << i);
                    let then_not = then_not.as_ref().is_some_and(|f| f.matches(e));
                    (mask != 0 || then_not).then(|| {
                        let message_id = e.message_id().to_string();
                        (e.user(), SequenceEvent { ts: e.ts(), message_id, steps: mask, then_not })
                    })
                });
                let spec = SequenceSpec { steps: s.steps.len(), within: s.within.0, min_age: s.min_age.0 };
                sequence(events, spec)
            }
        }
    }
}
