//! The long-running worker loop of `journeyflow run`: each worker tails its partitions of the
//! durable ingest log, feeds the events to its [`Programs`], moves the watermark (with the
//! wall clock once input goes quiet), applies sequenced requests from the control API,
//! answers membership queries as of their agreed time, and appends segment changes to its
//! output file. Worker 0 takes requests from the handle and sequences them for everyone, as
//! of the wall-clock time it receives them: the answer comes once every worker's watermark
//! has passed that time (within the allowed lateness plus the idle timeout), and includes
//! every event acknowledged before the request that the workers read before then.

use crate::engine::IngestConfig;
use crate::journey_output::{reports, ActionLine, JourneyNames, TransitionLine};
use crate::programs::{Programs, Sequenced};
use journeyflow_connectors::wal::{part_path, Tail};
use journeyflow_control_api::handle::{Answer, EngineHandle, Request, Ticket, HISTORY};
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::{ActionStatus, Command, JourneyOutput, Status};
use journeyflow_operators::journey::stats::Stat;
use journeyflow_operators::Time;
use journeyflow_types::time::now_ms;
use journeyflow_types::{decode_line, validate_journey, validate_segments, Key};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use timely::worker::Worker;

/// Report counters of one journey: `((journey, stat), value)`.
pub type Counters = BTreeMap<(u32, Stat), isize>;

/// What the workers share.
pub struct Shared {
    /// The handle the HTTP side holds.
    pub handle: EngineHandle,
    /// Requests, taken by worker 0.
    pub requests: Mutex<Option<Receiver<Ticket>>>,
    /// Answer channels by ticket, with the number of answers still due.
    pub tickets: Mutex<HashMap<u64, (tokio::sync::mpsc::UnboundedSender<Answer>, usize)>>,
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// Each worker's watermark.
    pub watermarks: Vec<AtomicU64>,
    /// The ingest log's directory and partition count.
    pub wal_dir: PathBuf,
    /// Partitions of the ingest log.
    pub partitions: usize,
    /// Where outputs go.
    pub out_dir: PathBuf,
    /// Watermark and dedup settings.
    pub ingest: IngestConfig,
    /// With no new events for this long, the watermark follows the wall clock.
    pub idle: Duration,
    /// Where sent actions are POSTed, if anywhere.
    pub webhooks: Option<journeyflow_connectors::webhook::Webhooks>,
    /// Each worker's share of each journey's report counters, with the version counted.
    pub journey_counts: Mutex<BTreeMap<String, Vec<(u32, Counters)>>>,
}

/// A journey's running plan, and the names of every version it ran (records of a replaced
/// version may still come after the new one is published).
struct Versions {
    plan: JourneyPlan,
    names: BTreeMap<u32, JourneyNames>,
}

/// A query waiting for its time to be complete.
enum Query {
    Members(String),
    User(Key),
}

/// A request as sequenced through the control input.
#[derive(Debug, Serialize, Deserialize)]
struct Sequence {
    ticket: u64,
    request: Request,
}

#[derive(Serialize)]
struct ChangeLine<'a> {
    segment: &'a str,
    user_id: &'a str,
    change: &'static str,
    time: u64,
}

/// Runs one worker until `stop` is set; then drains what the log holds and returns.
pub fn run_worker(worker: &mut Worker, shared: &Shared) -> anyhow::Result<()> {
    let (index, peers) = (worker.index(), worker.peers());
    let mut programs = Programs::new(worker, shared.ingest);
    let requests = if index == 0 { shared.requests.lock().expect("lock").take() } else { None };
    let mut tails: Vec<(usize, Tail)> = (0..shared.partitions)
        .filter(|p| p % peers == index)
        .map(|p| Ok((p, Tail::open(&part_path(&shared.wal_dir, p))?)))
        .collect::<std::io::Result<_>>()?;
    std::fs::create_dir_all(&shared.out_dir)?;
    let out_path = shared.out_dir.join(format!("segment_changes-{index}.ndjson"));
    let mut out = std::io::BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(out_path)?);
    let mut next_ticket: u64 = (index as u64) << 48;
    let mut pending: Vec<(Time, u64, Query)> = Vec::new();
    let mut plans: BTreeMap<String, Versions> = BTreeMap::new();
    let open = |name: String| -> std::io::Result<_> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(shared.out_dir.join(name))?;
        Ok(std::io::BufWriter::new(file))
    };
    let mut transitions_out = open(format!("journey_transitions-{index}.ndjson"))?;
    let mut actions_out = open(format!("journey_actions-{index}.ndjson"))?;
    let mut max_seen: Option<(Time, Instant)> = None;
    let mut counted: (u64, u64) = (0, 0);
    let mut draining = false;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            draining = true;
        }
        if let Some(rx) = &requests {
            while let Ok(ticket) = rx.try_recv() {
                next_ticket += 1;
                let due = ticket.request.answers(peers);
                shared.tickets.lock().expect("lock").insert(next_ticket, (ticket.reply, due));
                let text = serde_json::to_string(&Sequence { ticket: next_ticket, request: ticket.request })?;
                // As of the wall clock: events acknowledged before the request (read by the
                // workers within the allowed lateness) are in what it sees.
                programs.submit_at(text, now_ms());
            }
        }
        let mut read = 0;
        for (part, tail) in &mut tails {
            let lines = tail.read(20_000)?;
            let any = !lines.is_empty();
            let mut seen = Vec::with_capacity(lines.len());
            for line in lines {
                read += 1;
                // Lines were checked at ingest; one that fails now is counted and skipped.
                let Ok(event) = decode_line(&line) else {
                    shared.handle.progress.rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                max_seen = Some(match max_seen {
                    Some((m, at)) if m >= event.ts => (m, at),
                    _ => (event.ts, Instant::now()),
                });
                seen.push((event.user, event.user_id.clone()));
                if programs.offer(event).is_err() {
                    shared.handle.progress.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
            if any {
                shared.handle.progress.log_read.lock().expect("lock").insert(*part, tail.offset());
            }
            // User ids for answers: one lock per batch, not per event.
            if !seen.is_empty() {
                let mut names = shared.handle.names.write().expect("lock");
                for (key, id) in seen {
                    names.entry(key).or_insert_with(|| id.into());
                }
            }
        }
        let progress = &shared.handle.progress;
        progress.events_processed.fetch_add(read, Ordering::Relaxed);
        // This worker's counts, added to the totals as they grow.
        let (late, duplicates) = (programs.late(), programs.duplicates());
        progress.late.fetch_add(late - counted.0, Ordering::Relaxed);
        progress.duplicates.fetch_add(duplicates - counted.1, Ordering::Relaxed);
        counted = (late, duplicates);
        // Quiet input (or none yet): event time follows the wall clock.
        let quiet = max_seen.is_none_or(|(_, at)| at.elapsed() >= shared.idle);
        let heartbeat = quiet.then(|| now_ms().saturating_sub(shared.ingest.allowed_lateness.unwrap_or(0)));
        programs.advance(worker, heartbeat, |p, w, c| apply(p, w, c, shared, &mut pending, &mut plans, index));
        // Answer membership queries whose time is complete.
        let mut still = Vec::new();
        for (time, ticket, query) in pending.drain(..) {
            let answer = match &query {
                Query::Members(id) if !programs.has_segment(id) => Some(Answer::Failed(format!("no segment {id:?}"))),
                Query::Members(id) => programs.members_at(id, time).map(|m| Answer::Members(time, m)),
                Query::User(user) => programs.user_segments_at(*user, time).map(|s| Answer::Segments(time, s)),
            };
            match answer {
                Some(answer) => reply(shared, ticket, answer),
                None => still.push((time, ticket, query)),
            }
        }
        pending = still;
        programs.hold_compaction(pending.iter().map(|p| p.0).min());
        for id in programs.installed() {
            let changes = programs.take_changes(&id);
            if !changes.is_empty() {
                let delta: i64 = changes.iter().map(|c| c.diff as i64).sum();
                *shared.handle.progress.segment_sizes.lock().expect("lock").entry(id.clone()).or_default() += delta;
            }
            for c in changes {
                let name = shared.handle.name(&c.user).unwrap_or_else(|| c.user.to_string().into());
                let change = if c.diff > 0 { "enter" } else { "exit" };
                serde_json::to_writer(&mut out, &ChangeLine { segment: &id, user_id: &name, change, time: c.time })?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        for (id, Versions { plan, names }) in &plans {
            for record in &programs.take_journey_outputs(id) {
                match record {
                    JourneyOutput::Transition(t) => {
                        let line = TransitionLine::new(t, &names[&t.version], user_name(shared, &t.user));
                        serde_json::to_writer(&mut transitions_out, &line)?;
                        transitions_out.write_all(b"\n")?;
                        let mut users = shared.handle.journey_users.lock().expect("lock");
                        let history = users.entry((id.clone(), line.user_id.clone())).or_default();
                        if history.len() == HISTORY {
                            history.pop_front();
                        }
                        history.push_back(serde_json::to_value(&line)?);
                    }
                    JourneyOutput::Action(a) => {
                        let line = ActionLine::new(a, &names[&a.version], a.user, user_name(shared, &a.user));
                        serde_json::to_writer(&mut actions_out, &line)?;
                        actions_out.write_all(b"\n")?;
                        if let Some(hooks) = shared
                            .webhooks
                            .as_ref()
                            .filter(|h| a.status == ActionStatus::Sent && h.wants(&line.channel))
                        {
                            hooks.send(&line.channel, &line.action_id, serde_json::to_vec(&line)?);
                        }
                    }
                }
            }
            // Publish the journey's report when this worker's counters (which complete a little
            // after the records) changed: its share summed with the others', once every worker
            // counts for the same version (a new version's node indices are its own).
            let mine = (plan.version, programs.journey_counts(id));
            let mut all = shared.journey_counts.lock().expect("lock");
            let slots = all.entry(id.clone()).or_insert_with(|| vec![(0, BTreeMap::new()); peers]);
            if slots[index] == mine {
                continue;
            }
            slots[index] = mine;
            if slots.iter().any(|(version, _)| *version != plan.version) {
                continue;
            }
            let mut total = Counters::new();
            for (_, slot) in slots.iter() {
                for (k, v) in slot {
                    *total.entry(*k).or_default() += v;
                }
            }
            let report = reports(std::slice::from_ref(plan), &total).pop().expect("one plan");
            shared.handle.journey_reports.lock().expect("lock").insert(id.clone(), serde_json::to_value(report)?);
        }
        transitions_out.flush()?;
        actions_out.flush()?;
        shared.watermarks[index].store(programs.watermark(), Ordering::Relaxed);
        let low = shared.watermarks.iter().map(|w| w.load(Ordering::Relaxed)).min().unwrap_or(0);
        shared.handle.progress.watermark.store(low, Ordering::Relaxed);
        if draining && read == 0 {
            programs.close(worker);
            return Ok(());
        }
        if read == 0 {
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
    }
}

/// Installs (or, with `replace`, replaces) a segment given as JSON, as of `at`.
fn segment_change(
    programs: &mut Programs,
    worker: &mut Worker,
    definition: serde_json::Value,
    at: Time,
    replace: bool,
) -> Answer {
    let mut known: BTreeSet<String> = programs.installed().into_iter().collect();
    if replace {
        // A definition may not refer to itself: its old version does not count as known.
        known.remove(definition.get("id").and_then(|v| v.as_str()).unwrap_or_default());
    }
    let def = match validate_segments(&serde_json::Value::Array(vec![definition]), &known) {
        Ok(mut defs) => defs.pop().expect("one definition"),
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let done =
        if replace { programs.replace_segment(worker, &def, at) } else { programs.install_segment(worker, &def, at) };
    match done {
        Ok(()) => Answer::Installed(at),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

fn user_name(shared: &Shared, user: &Key) -> std::sync::Arc<str> {
    shared.handle.name(user).unwrap_or_else(|| user.to_string().into())
}

fn reply(shared: &Shared, ticket: u64, answer: Answer) {
    let mut tickets = shared.tickets.lock().expect("lock");
    if let Some((tx, due)) = tickets.get_mut(&ticket) {
        let _ = tx.send(answer);
        *due -= 1;
        if *due == 0 {
            tickets.remove(&ticket);
        }
    }
}

/// Applies one sequenced request on this worker; worker 0 answers changes, every worker
/// answers its share of a membership query (later, once complete).
fn apply(
    programs: &mut Programs,
    worker: &mut Worker,
    command: Sequenced,
    shared: &Shared,
    pending: &mut Vec<(Time, u64, Query)>,
    plans: &mut BTreeMap<String, Versions>,
    index: usize,
) {
    let Ok(Sequence { ticket, request }) = serde_json::from_str::<Sequence>(&command.text) else {
        tracing::error!("unreadable sequenced request {:?}", command.text);
        return;
    };
    let answer = match request {
        Request::InstallSegment { definition } => segment_change(programs, worker, definition, command.time, false),
        Request::ReplaceSegment { definition } => segment_change(programs, worker, definition, command.time, true),
        Request::InstallJourney { definition, version } => {
            let known: BTreeSet<String> = programs.installed().into_iter().collect();
            match validate_journey(&definition, &known) {
                Ok(def) => {
                    let plan = JourneyPlan::new(def, version);
                    let id = plan.id().to_string();
                    match programs.install_journey(worker, plan.clone(), command.time, Status::Ongoing) {
                        Ok(()) => {
                            let names = BTreeMap::from([(version, JourneyNames::new(&plan))]);
                            plans.insert(id, Versions { plan, names });
                            Answer::Installed(command.time)
                        }
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                }
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
        Request::PublishVersion { definition, version, migrate } => {
            let known: BTreeSet<String> = programs.installed().into_iter().collect();
            let def = validate_journey(&definition, &known);
            match (def, definition["id"].as_str().and_then(|id| plans.get_mut(id))) {
                (Err(e), _) => Answer::Failed(e.to_string()),
                (Ok(def), None) => Answer::Failed(format!("journey {:?} is not running", def.id)),
                (Ok(def), Some(versions)) => {
                    let plan = JourneyPlan::new(def, version);
                    match programs.publish_version(worker, plan.clone(), migrate, command.time) {
                        Ok(()) => {
                            versions.names.insert(version, JourneyNames::replacing(&plan, &versions.plan));
                            versions.plan = plan;
                            Answer::Installed(command.time)
                        }
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                }
            }
        }
        Request::JourneyCommand { id, command: name } => {
            let parsed = match name.as_str() {
                "pause" => Some(Command::Pause),
                "resume" => Some(Command::Resume),
                "end" => Some(Command::End),
                _ => None,
            };
            match parsed {
                None => Answer::Failed(format!("unknown command {name:?}")),
                Some(c) => match programs.journey_command(&id, c, command.time) {
                    Ok(()) => Answer::Installed(command.time),
                    Err(e) => Answer::Failed(e.to_string()),
                },
            }
        }
        Request::RemoveSegment { id } => match programs.remove_segment(worker, &id) {
            Ok(()) => {
                shared.handle.progress.segment_sizes.lock().expect("lock").remove(&id);
                Answer::Removed(command.time)
            }
            Err(e) => Answer::Failed(e.to_string()),
        },
        Request::Members { id } => {
            pending.push((command.time, ticket, Query::Members(id)));
            return;
        }
        Request::UserSegments { user_id } => {
            pending.push((command.time, ticket, Query::User(Key::of(&user_id))));
            return;
        }
    };
    if index == 0 {
        reply(shared, ticket, answer);
    }
}
