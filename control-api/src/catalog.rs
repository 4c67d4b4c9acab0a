//! The catalog: the installed segments and the journeys (drafts included) with their versions
//! and statuses, as the control API shows them. It is a pure fold of the control log, the one
//! durable record of changes: a [`Change`] is checked against the catalog ([`Catalog::check`]),
//! and only a change that passes is logged, applied to the catalog ([`Catalog::apply`]) and
//! handed to the workers. Worker 0 does all three, one change at a time, so concurrent
//! requests are serialized and the second of two conflicting ones is refused; the API reads
//! snapshots ([`CatalogView`]) that it publishes after each change, and a restart folds the
//! log again.

use journeyflow_types::cohort::{validate_cohort, CohortDefinition};
use journeyflow_types::entries::parse_entry;
use journeyflow_types::funnel::{validate_funnel, FunnelDefinition};
use journeyflow_types::paths::{validate_paths, PathsDefinition};
use journeyflow_types::{
    validate_journey_with, validate_segments_with, Limits, Migration, SegmentDefinition, ValidationError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

/// Event time in epoch milliseconds.
pub type Time = u64;

/// A change to what runs, as logged and as handed to the workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Install a segment (its definition JSON, as validation normalises it).
    InstallSegment {
        /// The definition.
        definition: Value,
    },
    /// Replace an installed segment's definition.
    ReplaceSegment {
        /// The new definition.
        definition: Value,
    },
    /// Remove a segment.
    RemoveSegment {
        /// Segment id.
        id: String,
    },
    /// Keep a new journey as a draft (version 1), not running until published.
    DraftJourney {
        /// The definition as written.
        definition: Value,
    },
    /// A journey's new definition: a draft's replacement, or a running journey's next version
    /// (published by [`Change::PublishVersion`]).
    ReviseJourney {
        /// The definition as written.
        definition: Value,
    },
    /// Publish a journey (a draft, or one given at start): it runs from the change's time.
    InstallJourney {
        /// The definition as written.
        definition: Value,
        /// Its version.
        version: u32,
    },
    /// Publish a running journey's next version: its users are handed over as of the change's
    /// time and placed as `migrate` says.
    PublishVersion {
        /// The new version's definition.
        definition: Value,
        /// The new version number: the running one's plus one.
        version: u32,
        /// Where users at the running version's nodes go.
        migrate: Migration,
    },
    /// Remove a draft, or an ended journey (its dataflow goes).
    RemoveJourney {
        /// Journey id.
        id: String,
    },
    /// Pause, resume or end a running journey.
    JourneyCommand {
        /// Journey id.
        id: String,
        /// What to do.
        command: Lifecycle,
    },
    /// Delete a user as of the change's time: everything held about them then goes. The user
    /// is named by key only (the hex of its 128-bit hash): no record of the deletion holds
    /// their id.
    DeleteUser {
        /// The user's key, as 32 hex digits.
        user: String,
        /// Refuse their later events until [`Change::Unsuppress`].
        suppress: bool,
    },
    /// Take events of a suppressed user again, from the change's time on.
    Unsuppress {
        /// The user's key, as 32 hex digits.
        user: String,
    },
    /// Install a funnel, computed over the retained history as of the change's time.
    InstallFunnel {
        /// The definition as written.
        definition: Value,
    },
    /// Replace an installed funnel's definition (computed afresh over the retained history).
    ReplaceFunnel {
        /// The new definition.
        definition: Value,
    },
    /// Remove a funnel (its dataflow goes).
    RemoveFunnel {
        /// Funnel id.
        id: String,
    },
    /// Install a retention cohort, computed over the retained history as of the change's time.
    InstallCohort {
        /// The definition as written.
        definition: Value,
    },
    /// Replace an installed cohort's definition (computed afresh over the retained history).
    ReplaceCohort {
        /// The new definition.
        definition: Value,
    },
    /// Remove a retention cohort (its dataflow goes).
    RemoveCohort {
        /// Cohort id.
        id: String,
    },
    /// Install a path analysis, computed over the retained history as of the change's time.
    InstallPaths {
        /// The definition as written.
        definition: Value,
    },
    /// Replace an installed path analysis's definition (computed afresh).
    ReplacePaths {
        /// The new definition.
        definition: Value,
    },
    /// Remove a path analysis (its dataflow goes).
    RemovePaths {
        /// Its id.
        id: String,
    },
    /// Let users into an ongoing journey as of the change's time (an entry from outside).
    EnterJourney {
        /// Journey id.
        id: String,
        /// The users' keys, as 32 hex digits, in order (no id is logged: a deleted user's stays
        /// nowhere).
        users: Vec<String>,
        /// What the journey's templates read as `context`: an object.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Value>,
    },
}

/// A user's deletion, as the catalog keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deletion {
    /// Sequential, from 1.
    pub id: u64,
    /// The user's key (hex).
    pub user: String,
    /// The time it applies as of: every event of theirs that entered by then goes.
    pub at: Time,
    /// Whether their later events are refused.
    pub suppress: bool,
}

/// Whether `user` is a key as written in changes: 32 lowercase hex digits.
pub fn is_key(user: &str) -> bool {
    user.len() == 32 && user.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A lifecycle command of a running journey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Ongoing to paused: nobody enters, nobody moves.
    Pause,
    /// Paused to ongoing.
    Resume,
    /// Ongoing or paused to ended, for good.
    End,
}

impl Lifecycle {
    /// The command's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Pause => "pause",
            Lifecycle::Resume => "resume",
            Lifecycle::End => "end",
        }
    }
}

impl Change {
    /// The definition it carries, if any.
    pub fn definition(&self) -> Option<&Value> {
        match self {
            Change::InstallSegment { definition }
            | Change::ReplaceSegment { definition }
            | Change::DraftJourney { definition }
            | Change::ReviseJourney { definition }
            | Change::InstallJourney { definition, .. }
            | Change::PublishVersion { definition, .. }
            | Change::InstallFunnel { definition }
            | Change::ReplaceFunnel { definition }
            | Change::InstallCohort { definition }
            | Change::ReplaceCohort { definition }
            | Change::InstallPaths { definition }
            | Change::ReplacePaths { definition } => Some(definition),
            Change::RemoveSegment { .. }
            | Change::RemoveFunnel { .. }
            | Change::RemoveCohort { .. }
            | Change::RemovePaths { .. }
            | Change::RemoveJourney { .. }
            | Change::JourneyCommand { .. }
            | Change::DeleteUser { .. }
            | Change::Unsuppress { .. }
            | Change::EnterJourney { .. } => None,
        }
    }

    /// Whether the workers' dataflows change (drafts live in the catalog only).
    pub fn runs(&self) -> bool {
        !matches!(self, Change::DraftJourney { .. } | Change::ReviseJourney { .. })
    }
}

/// Journey statuses.
pub mod status {
    /// Written, not running.
    pub const DRAFT: &str = "draft";
    /// Running.
    pub const ONGOING: &str = "ongoing";
    /// Running, nobody enters or moves.
    pub const PAUSED: &str = "paused";
    /// Stopped for good.
    pub const ENDED: &str = "ended";
}

/// A journey as the catalog keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JourneyEntry {
    /// The definition as written.
    pub definition: Value,
    /// The version running (or, for a draft, to be published).
    pub version: u32,
    /// `draft`, `ongoing`, `paused` or `ended`.
    pub status: String,
    /// When it (its current version) was published (event time), if it was.
    pub published_at: Option<Time>,
    /// The next version, written with `PUT` and not yet published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Value>,
}

impl JourneyEntry {
    /// Whether its dataflow exists (published, ended ones included).
    pub fn published(&self) -> bool {
        self.status != status::DRAFT
    }
}

/// Why a change is not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The definition is invalid (or over a limit): every error with its JSON path.
    Invalid(Vec<ValidationError>),
    /// What it names does not exist.
    NotFound(String),
    /// It conflicts with the catalog as it is (exists, in use, status, version).
    Conflict(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(errors) => {
                let all: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
                write!(f, "{}", all.join("; "))
            }
            Refusal::NotFound(why) | Refusal::Conflict(why) => f.write_str(why),
        }
    }
}

fn invalid(path: &str, message: impl Into<String>) -> Refusal {
    Refusal::Invalid(vec![ValidationError { path: path.into(), message: message.into() }])
}

/// Installed segments and journeys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// Installed segments by id.
    pub segments: BTreeMap<String, SegmentDefinition>,
    /// Journeys by id.
    pub journeys: BTreeMap<String, JourneyEntry>,
    /// Users deleted, in order (`id` is the position plus one).
    pub deletions: Vec<Deletion>,
    /// Suppressed users' keys, with the time since which their events are refused.
    pub suppressed: BTreeMap<String, Time>,
    /// Installed funnels by id.
    pub funnels: BTreeMap<String, FunnelDefinition>,
    /// Installed retention cohorts by id.
    pub cohorts: BTreeMap<String, CohortDefinition>,
    /// Installed path analyses by id.
    pub paths: BTreeMap<String, PathsDefinition>,
}

impl Catalog {
    /// The catalog a control log's changes make, in order: `(changes applied, changes that did
    /// not pass their check)`. Checks use the hard ceilings, not the configured limits: what
    /// was applied under higher limits stays.
    pub fn fold<'a>(changes: impl IntoIterator<Item = (&'a Change, Time)>) -> (Catalog, Vec<(Time, Refusal)>) {
        let mut catalog = Catalog::default();
        let mut refused = Vec::new();
        for (change, at) in changes {
            match catalog.check(change, &Limits::ceiling()) {
                Ok(()) => catalog.apply(change, at),
                Err(why) => refused.push((at, why)),
            }
        }
        (catalog, refused)
    }

    fn segment_ids(&self) -> BTreeSet<String> {
        self.segments.keys().cloned().collect()
    }

    /// Who uses segment `id`: other segments, and published journeys.
    pub fn users_of(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for def in self.segments.values() {
            let mut refs = Vec::new();
            def.condition.references(&mut refs);
            if refs.iter().any(|r| r == id) {
                out.push(def.id.clone());
            }
        }
        for (jid, entry) in self.journeys.iter().filter(|(_, e)| e.published()) {
            if journey_segments(&entry.definition).contains(id) {
                out.push(format!("journey {jid}"));
            }
        }
        out
    }

    fn segment(
        &self,
        definition: &Value,
        known: &BTreeSet<String>,
        limits: &Limits,
    ) -> Result<SegmentDefinition, Refusal> {
        let mut defs = validate_segments_with(&Value::Array(vec![definition.clone()]), known, limits)
            .map_err(|e| Refusal::Invalid(e.0.into_iter().map(relative).collect()))?;
        defs.pop().ok_or_else(|| invalid("$", "expected one segment definition"))
    }

    fn journey(&self, definition: &Value, limits: &Limits) -> Result<String, Refusal> {
        let def = validate_journey_with(definition, &self.segment_ids(), limits).map_err(|e| Refusal::Invalid(e.0))?;
        Ok(def.id)
    }

    fn funnel(&self, definition: &Value, limits: &Limits) -> Result<FunnelDefinition, Refusal> {
        validate_funnel(definition, limits).map_err(Refusal::Invalid)
    }

    /// Whether one more analysis (a funnel or a cohort: each a dataflow) may be installed.
    fn room_for_analysis(&self, limits: &Limits) -> Result<(), Refusal> {
        let max = limits.analyses;
        match self.funnels.len() + self.cohorts.len() + self.paths.len() >= max {
            true => Err(invalid("$", format!("{max} analyses are installed; at most {max} are allowed"))),
            false => Ok(()),
        }
    }

    fn entry(&self, id: &str) -> Result<&JourneyEntry, Refusal> {
        self.journeys.get(id).ok_or_else(|| Refusal::NotFound(format!("no journey {id:?}")))
    }

    /// Whether `change` may be applied now, under `limits`; why not, otherwise.
    pub fn check(&self, change: &Change, limits: &Limits) -> Result<(), Refusal> {
        match change {
            Change::InstallSegment { definition } => {
                let def = self.segment(definition, &self.segment_ids(), limits)?;
                if self.segments.contains_key(&def.id) {
                    return Err(Refusal::Conflict(format!("segment {:?} exists; replace it with PUT", def.id)));
                }
                if self.segments.len() >= limits.segments {
                    let max = limits.segments;
                    return Err(invalid("$", format!("{max} segments are installed; at most {max} are allowed")));
                }
                Ok(())
            }
            Change::ReplaceSegment { definition } => {
                let id = definition.get("id").and_then(Value::as_str).unwrap_or_default();
                if !self.segments.contains_key(id) {
                    return Err(Refusal::NotFound(format!("no segment {id:?}")));
                }
                let users = self.users_of(id);
                if !users.is_empty() {
                    return Err(Refusal::Conflict(format!(
                        "segment {id:?} is used by {users:?}; replace or remove those first"
                    )));
                }
                // A definition may not refer to itself: its old version does not count as known.
                let mut known = self.segment_ids();
                known.remove(id);
                self.segment(definition, &known, limits).map(|_| ())
            }
            Change::RemoveSegment { id } => {
                if !self.segments.contains_key(id) {
                    return Err(Refusal::NotFound(format!("no segment {id:?}")));
                }
                let users = self.users_of(id);
                match users.is_empty() {
                    true => Ok(()),
                    false => Err(Refusal::Conflict(format!("segment {id:?} is used by {users:?}"))),
                }
            }
            Change::DraftJourney { definition } => {
                let id = self.journey(definition, limits)?;
                if self.journeys.contains_key(&id) {
                    return Err(Refusal::Conflict(format!("journey {id:?} exists; change it with PUT")));
                }
                if self.journeys.len() >= limits.journeys {
                    let max = limits.journeys;
                    return Err(invalid("$", format!("{max} journeys exist; at most {max} are allowed")));
                }
                Ok(())
            }
            Change::ReviseJourney { definition } => {
                let id = self.journey(definition, limits)?;
                let entry = self.entry(&id)?;
                match entry.status == status::ENDED {
                    true => Err(Refusal::Conflict(format!("journey {id:?} has ended: it takes no new version"))),
                    false => Ok(()),
                }
            }
            Change::InstallJourney { definition, version } => {
                let id = self.journey(definition, limits)?;
                match self.journeys.get(&id) {
                    None if self.journeys.len() >= limits.journeys => {
                        let max = limits.journeys;
                        Err(invalid("$", format!("{max} journeys exist; at most {max} are allowed")))
                    }
                    None => Ok(()),
                    Some(e) if e.status != status::DRAFT => {
                        Err(Refusal::Conflict(format!("journey {id:?} is {}: cannot publish it", e.status)))
                    }
                    Some(e) if e.version != *version || e.definition != *definition => Err(Refusal::Conflict(format!(
                        "journey {id:?} changed meanwhile (now version {}): read it again",
                        e.version
                    ))),
                    Some(_) => Ok(()),
                }
            }
            Change::PublishVersion { definition, version, .. } => {
                let id = self.journey(definition, limits)?;
                let entry = self.entry(&id)?;
                if entry.status != status::ONGOING && entry.status != status::PAUSED {
                    return Err(Refusal::Conflict(format!(
                        "journey {id:?} is {}: cannot publish a version",
                        entry.status
                    )));
                }
                let fresh = entry.next.as_ref().is_none_or(|next| next == definition);
                if *version != entry.version + 1 || !fresh {
                    return Err(Refusal::Conflict(format!(
                        "journey {id:?} is at version {} and its next version changed meanwhile: read it again",
                        entry.version
                    )));
                }
                Ok(())
            }
            Change::RemoveJourney { id } => {
                let entry = self.entry(id)?;
                match entry.status == status::DRAFT || entry.status == status::ENDED {
                    true => Ok(()),
                    false => Err(Refusal::Conflict(format!("journey {id:?} is {}: end it first", entry.status))),
                }
            }
            Change::JourneyCommand { id, command } => {
                let entry = self.entry(id)?;
                let allowed = match command {
                    Lifecycle::Pause => entry.status == status::ONGOING,
                    Lifecycle::Resume => entry.status == status::PAUSED,
                    Lifecycle::End => entry.status == status::ONGOING || entry.status == status::PAUSED,
                };
                match allowed {
                    true => Ok(()),
                    false => Err(Refusal::Conflict(format!(
                        "journey {id:?} is {}: cannot {} it",
                        entry.status,
                        command.name()
                    ))),
                }
            }
            Change::InstallFunnel { definition } => {
                let def = self.funnel(definition, limits)?;
                if self.funnels.contains_key(&def.id) {
                    return Err(Refusal::Conflict(format!("funnel {:?} exists; replace it with PUT", def.id)));
                }
                self.room_for_analysis(limits)
            }
            Change::InstallCohort { definition } => {
                let def = validate_cohort(definition, limits).map_err(Refusal::Invalid)?;
                if self.cohorts.contains_key(&def.id) {
                    return Err(Refusal::Conflict(format!("cohort {:?} exists; replace it with PUT", def.id)));
                }
                self.room_for_analysis(limits)
            }
            Change::ReplaceCohort { definition } => {
                let def = validate_cohort(definition, limits).map_err(Refusal::Invalid)?;
                match self.cohorts.contains_key(&def.id) {
                    true => Ok(()),
                    false => Err(Refusal::NotFound(format!("no cohort {:?}", def.id))),
                }
            }
            Change::RemoveCohort { id } => match self.cohorts.contains_key(id) {
                true => Ok(()),
                false => Err(Refusal::NotFound(format!("no cohort {id:?}"))),
            },
            Change::InstallPaths { definition } => {
                let def = validate_paths(definition, limits).map_err(Refusal::Invalid)?;
                if self.paths.contains_key(&def.id) {
                    return Err(Refusal::Conflict(format!("path analysis {:?} exists; replace it with PUT", def.id)));
                }
                self.room_for_analysis(limits)
            }
            Change::ReplacePaths { definition } => {
                let def = validate_paths(definition, limits).map_err(Refusal::Invalid)?;
                match self.paths.contains_key(&def.id) {
                    true => Ok(()),
                    false => Err(Refusal::NotFound(format!("no path analysis {:?}", def.id))),
                }
            }
            Change::RemovePaths { id } => match self.paths.contains_key(id) {
                true => Ok(()),
                false => Err(Refusal::NotFound(format!("no path analysis {id:?}"))),
            },
            Change::ReplaceFunnel { definition } => {
                let def = self.funnel(definition, limits)?;
                match self.funnels.contains_key(&def.id) {
                    true => Ok(()),
                    false => Err(Refusal::NotFound(format!("no funnel {:?}", def.id))),
                }
            }
            Change::RemoveFunnel { id } => match self.funnels.contains_key(id) {
                true => Ok(()),
                false => Err(Refusal::NotFound(format!("no funnel {id:?}"))),
            },
            Change::DeleteUser { user, .. } if !is_key(user) => Err(invalid("$.user", "expected 32 hex digits")),
            Change::DeleteUser { .. } => Ok(()),
            Change::Unsuppress { user } => match self.suppressed.contains_key(user) {
                true => Ok(()),
                false => Err(Refusal::NotFound("the user is not suppressed".into())),
            },
            Change::EnterJourney { users, .. } if !users.iter().all(|u| is_key(u)) => {
                Err(invalid("$.users", "expected keys of 32 hex digits"))
            }
            Change::EnterJourney { id, users, context } => {
                let mut request = serde_json::json!({"users": users});
                if let Some(c) = context {
                    request["context"] = c.clone();
                }
                parse_entry(&request, "$", &[], limits).map_err(Refusal::Invalid)?;
                let entry = self.entry(id)?;
                match entry.status == status::ONGOING {
                    true => Ok(()),
                    false => Err(Refusal::Conflict(format!("journey {id:?} is {}: nobody can enter it", entry.status))),
                }
            }
        }
    }

    /// Applies a change that passed [`Catalog::check`], as of `at`.
    pub fn apply(&mut self, change: &Change, at: Time) {
        match change {
            Change::InstallSegment { definition } | Change::ReplaceSegment { definition } => {
                let parsed = validate_segments_with(
                    &Value::Array(vec![definition.clone()]),
                    &self.segment_ids(),
                    &Limits::ceiling(),
                );
                // Checked before: a definition that no longer parses changes nothing.
                if let Some(def) = parsed.ok().and_then(|mut d| d.pop()) {
                    self.segments.insert(def.id.clone(), def);
                }
            }
            Change::RemoveSegment { id } => {
                self.segments.remove(id);
            }
            Change::DraftJourney { definition } => {
                if let Some(id) = journey_id(definition) {
                    let entry = JourneyEntry {
                        definition: definition.clone(),
                        version: 1,
                        status: status::DRAFT.into(),
                        published_at: None,
                        next: None,
                    };
                    self.journeys.insert(id, entry);
                }
            }
            Change::ReviseJourney { definition } => {
                if let Some(entry) = journey_id(definition).and_then(|id| self.journeys.get_mut(&id)) {
                    match entry.status == status::DRAFT {
                        true => entry.definition = definition.clone(),
                        false => entry.next = Some(definition.clone()),
                    }
                }
            }
            Change::InstallJourney { definition, version } => {
                if let Some(id) = journey_id(definition) {
                    let entry = JourneyEntry {
                        definition: definition.clone(),
                        version: *version,
                        status: status::ONGOING.into(),
                        published_at: Some(at),
                        next: None,
                    };
                    self.journeys.insert(id, entry);
                }
            }
            Change::PublishVersion { definition, version, .. } => {
                if let Some(entry) = journey_id(definition).and_then(|id| self.journeys.get_mut(&id)) {
                    entry.definition = definition.clone();
                    entry.version = *version;
                    entry.published_at = Some(at);
                    entry.next = None;
                }
            }
            Change::RemoveJourney { id } => {
                self.journeys.remove(id);
            }
            Change::JourneyCommand { id, command } => {
                if let Some(entry) = self.journeys.get_mut(id) {
                    entry.status = match command {
                        Lifecycle::Pause => status::PAUSED,
                        Lifecycle::Resume => status::ONGOING,
                        Lifecycle::End => status::ENDED,
                    }
                    .into();
                }
            }
            Change::DeleteUser { user, suppress } => {
                let id = self.deletions.len() as u64 + 1;
                self.deletions.push(Deletion { id, user: user.clone(), at, suppress: *suppress });
                if *suppress {
                    self.suppressed.insert(user.clone(), at);
                }
            }
            Change::Unsuppress { user } => {
                self.suppressed.remove(user);
            }
            // Entries change what runs, not the catalog.
            Change::EnterJourney { .. } => {}
            Change::InstallFunnel { definition } | Change::ReplaceFunnel { definition } => {
                // Checked before: a definition that no longer parses changes nothing.
                if let Ok(def) = validate_funnel(definition, &Limits::ceiling()) {
                    self.funnels.insert(def.id.clone(), def);
                }
            }
            Change::RemoveFunnel { id } => {
                self.funnels.remove(id);
            }
            Change::InstallCohort { definition } | Change::ReplaceCohort { definition } => {
                if let Ok(def) = validate_cohort(definition, &Limits::ceiling()) {
                    self.cohorts.insert(def.id.clone(), def);
                }
            }
            Change::RemoveCohort { id } => {
                self.cohorts.remove(id);
            }
            Change::InstallPaths { definition } | Change::ReplacePaths { definition } => {
                if let Ok(def) = validate_paths(definition, &Limits::ceiling()) {
                    self.paths.insert(def.id.clone(), def);
                }
            }
            Change::RemovePaths { id } => {
                self.paths.remove(id);
            }
        }
    }
}

/// Paths of a one-element array's validation made relative to the single definition.
pub fn relative(mut e: ValidationError) -> ValidationError {
    e.path = e.path.replacen("$[0]", "$", 1);
    e
}

fn journey_id(definition: &Value) -> Option<String> {
    definition.get("id").and_then(Value::as_str).map(str::to_string)
}

/// The segments a journey definition names (entry, branch cases, exit rule), read from its JSON.
fn journey_segments(definition: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let entry = &definition["entry"];
    for key in ["segment_enter", "segment_exit", "segment"] {
        if let Some(id) = entry.get(key).and_then(Value::as_str) {
            out.insert(id.to_string());
        }
    }
    let mut conditions: Vec<&Value> = vec![&definition["exit_when"]];
    if let Some(nodes) = definition["nodes"].as_object() {
        for node in nodes.values() {
            if let Some(cases) = node["branch"]["cases"].as_array() {
                conditions.extend(cases.iter().map(|c| &c["when"]));
            }
        }
    }
    // `in_segment` anywhere in the conditions, without recursion.
    while let Some(v) = conditions.pop() {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(id)) = o.get("in_segment") {
                    out.insert(id.clone());
                }
                conditions.extend(o.values());
            }
            Value::Array(items) => conditions.extend(items),
            _ => {}
        }
    }
    out
}

/// The latest catalog, as the API reads it: a snapshot swapped in whole after each change, so
/// a reader never holds the lock for more than a clone of a pointer (and a panicking writer
/// cannot poison it for good).
#[derive(Default)]
pub struct CatalogView {
    latest: RwLock<(u64, Arc<Catalog>)>,
}

impl CatalogView {
    /// The current catalog.
    pub fn get(&self) -> Arc<Catalog> {
        self.latest.read().unwrap_or_else(PoisonError::into_inner).1.clone()
    }

    /// The current catalog and how many times it was replaced.
    pub fn versioned(&self) -> (u64, Arc<Catalog>) {
        let latest = self.latest.read().unwrap_or_else(PoisonError::into_inner);
        (latest.0, latest.1.clone())
    }

    /// Publishes a new catalog.
    pub fn set(&self, catalog: Catalog) {
        let mut latest = self.latest.write().unwrap_or_else(PoisonError::into_inner);
        *latest = (latest.0 + 1, Arc::new(catalog));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seg(id: &str, condition: Value) -> Value {
        json!({"id": id, "condition": condition})
    }

    fn journey(id: &str, entry_segment: &str) -> Value {
        json!({"id": id, "entry": {"segment_enter": entry_segment}, "start": "e", "nodes": {"e": {"exit": {}}}})
    }

    fn applied(catalog: &mut Catalog, change: Change, at: Time) -> Result<(), Refusal> {
        catalog.check(&change, &Limits::default())?;
        catalog.apply(&change, at);
        Ok(())
    }

    #[test]
    fn segments_are_installed_once_and_kept_while_used() {
        let mut c = Catalog::default();
        let a = seg("a", json!({"performed": {"event": "X"}}));
        applied(&mut c, Change::InstallSegment { definition: a.clone() }, 1).unwrap();
        assert!(matches!(applied(&mut c, Change::InstallSegment { definition: a }, 2), Err(Refusal::Conflict(_))));
        let b = seg("b", json!({"not": {"in_segment": "a"}}));
        applied(&mut c, Change::InstallSegment { definition: b }, 3).unwrap();
        let remove = Change::RemoveSegment { id: "a".into() };
        assert!(matches!(c.check(&remove, &Limits::default()), Err(Refusal::Conflict(m)) if m.contains("\"b\"")));
        applied(&mut c, Change::RemoveSegment { id: "b".into() }, 4).unwrap();
        applied(&mut c, Change::DraftJourney { definition: journey("j", "a") }, 5).unwrap();
        // A draft does not hold a segment; a published journey does.
        assert!(c.check(&remove, &Limits::default()).is_ok());
        applied(&mut c, Change::InstallJourney { definition: journey("j", "a"), version: 1 }, 6).unwrap();
        assert!(matches!(c.check(&remove, &Limits::default()), Err(Refusal::Conflict(m)) if m.contains("journey j")));
        // A scheduled entry holds its segment too.
        applied(&mut c, Change::InstallSegment { definition: seg("d", json!({"performed": {"event": "Z"}})) }, 7)
            .unwrap();
        let scheduled = json!({"id": "k", "entry": {"segment": "d", "every": "1d", "at": "09:00"}, "start": "e",
                               "nodes": {"e": {"exit": {}}}});
        applied(&mut c, Change::InstallJourney { definition: scheduled, version: 1 }, 8).unwrap();
        let remove_d = Change::RemoveSegment { id: "d".into() };
        assert!(matches!(c.check(&remove_d, &Limits::default()), Err(Refusal::Conflict(m)) if m.contains("journey k")));
        let missing = Change::RemoveSegment { id: "zz".into() };
        assert!(matches!(c.check(&missing, &Limits::default()), Err(Refusal::NotFound(_))));
        let over = Limits { segments: 1, ..Limits::default() };
        let third = Change::InstallSegment { definition: seg("c", json!({"performed": {"event": "Y"}})) };
        assert!(matches!(c.check(&third, &over), Err(Refusal::Invalid(e)) if e[0].message.contains("at most 1")));
    }

    #[test]
    fn a_second_publish_of_the_same_version_is_a_conflict() {
        let mut c = Catalog::default();
        applied(&mut c, Change::InstallSegment { definition: seg("s", json!({"performed": {"event": "X"}})) }, 1)
            .unwrap();
        applied(&mut c, Change::InstallJourney { definition: journey("j", "s"), version: 1 }, 2).unwrap();
        let mut v2 = journey("j", "s");
        v2["name"] = json!("second");
        applied(&mut c, Change::ReviseJourney { definition: v2.clone() }, 3).unwrap();
        assert_eq!(c.journeys["j"].next, Some(v2.clone()));
        let publish = Change::PublishVersion { definition: v2, version: 2, migrate: Migration::default() };
        applied(&mut c, publish.clone(), 4).unwrap();
        assert!(matches!(applied(&mut c, publish, 5), Err(Refusal::Conflict(_))));
        let j = &c.journeys["j"];
        assert_eq!((j.version, j.status.as_str(), j.published_at, j.next.is_none()), (2, "ongoing", Some(4), true));
        let pause = Change::JourneyCommand { id: "j".into(), command: Lifecycle::Pause };
        applied(&mut c, pause.clone(), 6).unwrap();
        assert!(matches!(applied(&mut c, pause, 7), Err(Refusal::Conflict(m)) if m.contains("is paused")));
        // Only a draft or an ended journey can be removed.
        let remove = Change::RemoveJourney { id: "j".into() };
        assert!(
            matches!(c.check(&remove, &Limits::default()), Err(Refusal::Conflict(m)) if m.contains("end it first"))
        );
        applied(&mut c, Change::JourneyCommand { id: "j".into(), command: Lifecycle::End }, 8).unwrap();
        applied(&mut c, remove, 9).unwrap();
        assert!(c.journeys.is_empty());
    }

    #[test]
    fn the_log_folds_into_the_catalog_and_old_failures_are_listed() {
        let install = Change::InstallSegment { definition: seg("s", json!({"performed": {"event": "X"}})) };
        let log = [(install.clone(), 1), (install, 2), (Change::RemoveSegment { id: "s".into() }, 3)];
        let (catalog, refused) = Catalog::fold(log.iter().map(|(c, t)| (c, *t)));
        assert!(catalog.segments.is_empty());
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 2);
        // Old log lines (from before drafts were logged) still read.
        let old: Change = serde_json::from_str(r#"{"op": "journey_command", "id": "j", "command": "pause"}"#).unwrap();
        assert_eq!(old, Change::JourneyCommand { id: "j".into(), command: Lifecycle::Pause });
    }
}
