//! How one version of a journey hands its users to the next on the same worker. Both
//! versions exchange users by the same key, so each worker's old operator holds exactly the
//! users its new operator will: the old one, retiring at the end of the publish time, leaves
//! their states here and wakes the new one, which waits for them before moving anyone after
//! that time.

use super::machine::UserState;
use super::plan::JourneyPlan;
use super::record::Status;
use journeyflow_types::Key;
use std::cell::RefCell;
use std::rc::Rc;
use timely::scheduling::Activator;

/// What a retiring version leaves: its plan, its status, and every user state it kept.
pub struct Left {
    /// The retiring version's plan (node indices in `users` are its).
    pub plan: Rc<JourneyPlan>,
    /// Its status at the handover.
    pub status: Status,
    /// Users by key, in key order.
    pub users: Vec<(Key, UserState)>,
}

#[derive(Default)]
struct Slot {
    left: Option<Left>,
    taken: bool,
    waiting: Option<Activator>,
}

/// One worker's handover from one version to the next.
#[derive(Clone, Default)]
pub struct Handover(Rc<RefCell<Slot>>);

impl Handover {
    /// Called by the retiring operator: leaves its users and wakes the successor.
    pub fn leave(&self, left: Left) {
        let mut slot = self.0.borrow_mut();
        slot.left = Some(left);
        if let Some(a) = &slot.waiting {
            a.activate();
        }
    }

    /// Called by the successor: takes what was left, if it is there yet; else asks to be woken.
    pub fn take(&self, waiting: &Activator) -> Option<Left> {
        let mut slot = self.0.borrow_mut();
        let left = slot.left.take();
        slot.taken |= left.is_some();
        if !slot.taken {
            slot.waiting = Some(waiting.clone());
        }
        left
    }

    /// Whether the successor has taken the users (the retired dataflow may then go).
    pub fn is_done(&self) -> bool {
        self.0.borrow().taken
    }
}
