//! Worker 0's side of the control API: it takes requests from the handle's queue one at a
//! time; a change is checked against the catalog, logged, applied to the catalog (whose new
//! snapshot the API then reads) and entered on the control input, which every worker applies
//! at the same time; a refused change is answered with its reason and leaves no trace. A
//! query (members, a user's segments) is entered on the control input too, and answered by
//! every worker once its time is complete. At start it enters the control log's changes
//! again, each at its time.

use crate::control_log::{ControlLog, Entry};
use crate::programs::Programs;
use journeyflow_control_api::catalog::{Catalog, CatalogView, Change};
use journeyflow_control_api::handle::{Answer, Request, Ticket};
use journeyflow_operators::Time;
use journeyflow_types::time::now_ms;
use journeyflow_types::{Key, Limits};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// A request as it travels on the control input; `ticket` 0 for a change (answered already)
/// and for one applied again from the control log.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sequence {
    /// The ticket a query's answers go to.
    pub ticket: u64,
    /// The request.
    pub request: Request,
}

/// The catalog and the control log, owned by worker 0.
pub struct Sequencer {
    requests: Receiver<Ticket>,
    catalog: Catalog,
    log: ControlLog,
    view: Arc<CatalogView>,
    limits: Limits,
    /// The log's changes that applied, to enter again at start.
    replay: Vec<Entry>,
    /// The latest time a request was entered at: later ones never go before it (the wall
    /// clock may step back), so the workers apply changes in the order they were decided.
    last: Time,
    /// The latest time a user was deleted or unsuppressed at: the next one goes after it, so
    /// that two at one time never depend on an order within the time.
    last_erasure: Option<Time>,
    /// The log's length, how many of its entries were through the time, and whether a
    /// snapshot was there, at the last compaction tried: until one changes, none is tried again.
    compaction_tried: Option<(usize, usize, bool)>,
}

/// Enters a deletion or an unsuppression into the dataflow (worker 0's; every worker notes a
/// deletion when it applies the change from the control input).
fn erase(programs: &mut Programs, change: &Change, time: Time) -> anyhow::Result<()> {
    let key = |user: &str| Key::parse(user).ok_or_else(|| anyhow::anyhow!("{user:?} is not a user key"));
    match change {
        Change::DeleteUser { user, suppress } => {
            programs.delete_user(key(user)?, time, *suppress);
        }
        Change::Unsuppress { user } => {
            programs.unsuppress(key(user)?, time);
        }
        _ => {}
    }
    Ok(())
}

/// A compaction that leaves out this many changes is worth rewriting the log for (as is one
/// that halves it).
const COMPACT_AT_LEAST: usize = 16;

/// A query waiting for its answers: where they go and how many are due.
pub type Waiting = (tokio::sync::mpsc::UnboundedSender<Answer>, usize);

impl Sequencer {
    /// The sequencer over a control log: the catalog is the fold of its entries (ones that no
    /// longer pass their check are reported and left out), published to `view`.
    pub fn new(requests: Receiver<Ticket>, log: ControlLog, view: Arc<CatalogView>, limits: Limits) -> Sequencer {
        let entries = log.entries().to_vec();
        let mut catalog = Catalog::default();
        let mut replay = Vec::with_capacity(entries.len());
        let last = entries.iter().map(|e| e.time).max().unwrap_or(0);
        let last_erasure = entries
            .iter()
            .filter(|e| matches!(e.change, Change::DeleteUser { .. } | Change::Unsuppress { .. }))
            .map(|e| e.time)
            .max();
        for entry in entries {
            match catalog.check(&entry.change, &Limits::ceiling()) {
                Ok(()) => {
                    catalog.apply(&entry.change, entry.time);
                    replay.push(entry);
                }
                Err(why) => tracing::warn!("control log: a change as of {} did not apply: {why}", entry.time),
            }
        }
        view.set(catalog.clone());
        Sequencer { requests, catalog, log, view, limits, replay, last, last_erasure, compaction_tried: None }
    }

    /// The catalog as the log left it.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Enters the control log's changes on the control input again, each at its time.
    pub fn replay(&mut self, programs: &mut Programs) -> anyhow::Result<()> {
        for entry in std::mem::take(&mut self.replay) {
            erase(programs, &entry.change, entry.time)?;
            let text = serde_json::to_string(&Sequence { ticket: 0, request: Request::Change(entry.change) })?;
            programs.submit_at(text, entry.time);
        }
        Ok(())
    }

    /// Enters a snapshot of every journey's state as of the control input's time, which follows
    /// event time (see [`Programs::snapshot_journeys`]): not the wall clock, which event time
    /// may be far behind (a backfill) and which a snapshot would then wait for. It may go before
    /// a change decided earlier: every worker applies both in time order.
    pub fn snapshot(&mut self, programs: &mut Programs) -> anyhow::Result<()> {
        let time = programs.control_time();
        let text = serde_json::to_string(&Sequence { ticket: 0, request: Request::SnapshotJourneys })?;
        programs.submit_at(text, time);
        Ok(())
    }

    /// Compacts the control log through `through` (see [`crate::control_compaction`]) when
    /// that leaves out enough of it. `snapshot` says whether the newest checkpoint restores the
    /// journeys from a snapshot at or after `through`: without one, a log whose journeys were
    /// published by then is kept whole (a restart runs them from their publication).
    pub fn compact(&mut self, through: Time, snapshot: bool) {
        if self.log.compacted_through().is_some_and(|done| done >= through) {
            return;
        }
        let entries = self.log.entries();
        let tried = (entries.len(), entries.partition_point(|e| e.time <= through), snapshot);
        if self.compaction_tried == Some(tried) {
            return;
        }
        self.compaction_tried = Some(tried);
        let Some(compacted) = crate::control_compaction::compact(entries, through) else { return };
        let dropped = compacted.dropped;
        let worth = dropped >= COMPACT_AT_LEAST || (dropped > 0 && dropped >= compacted.entries.len());
        if !worth || (compacted.journeys && !snapshot) {
            return;
        }
        match self.log.replace(compacted, through) {
            Ok(()) => tracing::info!("control log compacted through {through}: {dropped} changes fewer"),
            Err(e) => tracing::warn!("control log: not compacted yet: {e:#}"),
        }
    }

    /// Takes every request waiting: decides changes at once, enters queries; `register`
    /// keeps a query's answer channel under a new ticket.
    pub fn take(
        &mut self,
        programs: &mut Programs,
        mut register: impl FnMut(Waiting) -> u64,
        peers: usize,
    ) -> anyhow::Result<()> {
        while let Ok(ticket) = self.requests.try_recv() {
            let Ticket { request, reply, at } = ticket;
            // As of the wall clock (never before the control input's time, nor before an
            // earlier request): events acknowledged before the request are in what it sees.
            let mut time = programs.control_time().max(at.unwrap_or_else(now_ms)).max(self.last);
            if let Request::Change(Change::DeleteUser { .. } | Change::Unsuppress { .. }) = &request {
                time = time.max(self.last_erasure.map_or(0, |t| t + 1));
                self.last_erasure = Some(time);
            }
            self.last = time;
            match request {
                Request::Change(change) => {
                    let limits = self.limits;
                    let _ = reply.send(self.decide(change, time, &limits, programs)?);
                }
                Request::Import(change) => {
                    let _ = reply.send(self.decide(change, time, &Limits::ceiling(), programs)?);
                }
                query => {
                    let due = query.answers(peers);
                    let ticket = register((reply, due));
                    programs.submit_at(serde_json::to_string(&Sequence { ticket, request: query })?, time);
                }
            }
        }
        Ok(())
    }

    /// Checks a change under `limits`; if it passes, logs it, applies it to the catalog and
    /// enters it.
    fn decide(
        &mut self,
        change: Change,
        time: Time,
        limits: &Limits,
        programs: &mut Programs,
    ) -> anyhow::Result<Answer> {
        if let Err(why) = self.catalog.check(&change, limits) {
            return Ok(Answer::Refused(why));
        }
        let entry = Entry { time, change };
        if let Err(e) = self.log.append(&entry) {
            tracing::error!("control log: {e}");
            return Ok(Answer::Failed(format!("the control log could not be written ({e}): nothing was changed")));
        }
        self.catalog.apply(&entry.change, time);
        self.view.set(self.catalog.clone());
        erase(programs, &entry.change, time)?;
        if entry.change.runs() {
            let text = serde_json::to_string(&Sequence { ticket: 0, request: Request::Change(entry.change) })?;
            programs.submit_at(text, time);
        }
        Ok(Answer::Applied(time))
    }
}
