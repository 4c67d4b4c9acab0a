//! What workers tell each other outside the dataflows' own progress, through one small
//! dataflow (so across processes too): each worker's status (watermark, its process's durable
//! output frontier, whether inputs are open or the cluster is stopping, its journey counters)
//! goes to the first worker of every process, answers to a request go to the worker that
//! holds its ticket, and transitions to worker 0 (process 0 serves each user's history). Nothing here waits on the dataflow's progress: its input advances only
//! to push what was sent (exchange channels hold records back until their epoch closes).

use journeyflow_control_api::handle::Answer;
use journeyflow_operators::journey::stats::Stat;
use journeyflow_operators::Time;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Input;
use timely::dataflow::InputHandleVec;
use timely::worker::Worker;

/// Bits of the ticket number that say which worker holds the ticket.
pub const TICKET_WORKER_SHIFT: u32 = 48;

/// A journey's report counters on one worker, with the version counted.
pub type JourneyCounts = BTreeMap<String, (u32, Vec<((u32, Stat), isize)>)>;

/// One worker's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The worker's global index.
    pub worker: usize,
    /// Its input watermark.
    pub watermark: Time,
    /// Whether it reads any partition (one that reads none follows the others' watermarks).
    pub reads: bool,
    /// Every output of its process before this time is durable.
    pub durable: Time,
    /// How many deletions its process has carried out in its files.
    pub scrubbed: u64,
    /// Whether its process opened the inputs (worker 0's opens everyone's).
    pub inputs_open: bool,
    /// Whether its process is stopping (which stops everyone).
    pub stopping: bool,
    /// Its journeys' counters.
    pub journeys: JourneyCounts,
}

/// A message of the gossip dataflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Message {
    /// A worker's status.
    Status(Status),
    /// An answer to the request with this ticket.
    Answer(u64, Answer),
    /// A journey record `(journey, user, line)` for process 0's per-user history.
    History(String, journeyflow_types::Key, String),
    /// A process's counts, for process 0's overview.
    Tally(usize, journeyflow_control_api::tally::Tally),
    /// An output record for process 0's live tail.
    Tail(journeyflow_control_api::tail::Item),
    /// The topics process 0's live streams follow.
    Follow(std::collections::BTreeSet<journeyflow_control_api::tail::Topic>),
}

/// One worker's end of the gossip dataflow.
pub struct Gossip {
    input: InputHandleVec<u64, (usize, Message)>,
    received: Rc<RefCell<Vec<Message>>>,
    /// First worker of each process.
    firsts: Vec<usize>,
    last: Option<Status>,
    sent: bool,
}

impl Gossip {
    /// Builds the dataflow on this worker, for `processes` processes of `workers` threads.
    pub fn new(worker: &mut Worker, processes: usize, workers: usize) -> Gossip {
        let mut input = InputHandleVec::new();
        let received = Rc::new(RefCell::new(Vec::new()));
        let into = received.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            scope.input_from(&mut input).sink(
                Exchange::new(|(to, _): &(usize, Message)| *to as u64),
                "Gossip",
                move |(input, _)| {
                    input.for_each(|_, data| into.borrow_mut().extend(data.drain(..).map(|(_, m)| m)));
                },
            );
        });
        let firsts = (0..processes).map(|p| p * workers).collect();
        Gossip { input, received, firsts, last: None, sent: false }
    }

    /// Sends this worker's status to every process, if it changed since the last one.
    pub fn status(&mut self, status: Status) {
        if self.last.as_ref() == Some(&status) {
            return;
        }
        for first in &self.firsts {
            self.input.send((*first, Message::Status(status.clone())));
        }
        self.last = Some(status);
        self.sent = true;
    }

    /// Sends an answer to the worker that holds the ticket.
    pub fn answer(&mut self, ticket: u64, answer: Answer) {
        self.input.send(((ticket >> TICKET_WORKER_SHIFT) as usize, Message::Answer(ticket, answer)));
        self.sent = true;
    }

    /// Sends a journey record to worker 0, which keeps each user's latest.
    pub fn history(&mut self, journey: String, user: journeyflow_types::Key, line: String) {
        self.input.send((0, Message::History(journey, user, line)));
        self.sent = true;
    }

    /// Sends process `process`'s counts to worker 0.
    pub fn tally(&mut self, process: usize, tally: journeyflow_control_api::tally::Tally) {
        self.input.send((0, Message::Tally(process, tally)));
        self.sent = true;
    }

    /// Sends output records to worker 0, for its process's live tail.
    pub fn tail(&mut self, items: impl IntoIterator<Item = journeyflow_control_api::tail::Item>) {
        for item in items {
            self.input.send((0, Message::Tail(item)));
            self.sent = true;
        }
    }

    /// Tells every process's first worker which topics process 0's live streams follow.
    pub fn follow(&mut self, topics: &std::collections::BTreeSet<journeyflow_control_api::tail::Topic>) {
        for first in &self.firsts {
            self.input.send((*first, Message::Follow(topics.clone())));
        }
        self.sent = true;
    }

    /// Pushes out what was sent, and hands over what arrived since the last call.
    pub fn take(&mut self) -> Vec<Message> {
        if std::mem::take(&mut self.sent) {
            let next = *self.input.time() + 1;
            self.input.advance_to(next);
        }
        std::mem::take(&mut *self.received.borrow_mut())
    }

    /// Closes this worker's input (the dataflow ends once every worker's is closed).
    pub fn close(self) {
        drop(self.input);
    }
}
