//! Recent member listings kept for paging: the pages of one listing all come from one
//! answer (one `as_of`), as long as it is among the most recent ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many listings are kept.
const KEEP: usize = 32;

/// A listing: as of when, and the sorted user ids.
pub type Listing = (u64, Arc<Vec<String>>);

/// The most recent listings, by segment and time.
#[derive(Default)]
pub struct Answers {
    recent: Mutex<VecDeque<(String, Listing)>>,
}

impl Answers {
    /// The listing of `segment` as of `as_of`, if still kept.
    pub fn get(&self, segment: &str, as_of: u64) -> Option<Listing> {
        let recent = self.recent.lock().ok()?;
        recent.iter().find(|(s, (t, _))| s == segment && *t == as_of).map(|(_, listing)| listing.clone())
    }

    /// Keeps a listing, forgetting the oldest beyond the limit.
    pub fn put(&self, segment: &str, as_of: u64, ids: Arc<Vec<String>>) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.push_back((segment.to_string(), (as_of, ids)));
            while recent.len() > KEEP {
                recent.pop_front();
            }
        }
    }
}
