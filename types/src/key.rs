//! Compact keys for strings the dataflow compares and hashes all the time: user ids and
//! message ids become 128-bit XXH3 hashes. Two different ids share a key with probability
//! about n²/2^129 (for 10^9 ids, 1.5e-21); the pipeline still checks every user id it
//! maps back to text and reports a collision instead of merging two users silently.

use serde::{Deserialize, Serialize};

/// A 128-bit key standing for a string id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key(pub u128);

impl Key {
    /// The key of a string id: stable across runs, processes and machines.
    pub fn of(id: &str) -> Key {
        Key(xxhash_rust::xxh3::xxh3_128(id.as_bytes()))
    }

    /// A key as `Display` writes it (32 hex digits).
    pub fn parse(hex: &str) -> Option<Key> {
        (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok().map(Key)).flatten()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Hashes a `Key` for hash maps by taking its low 64 bits: keys are already uniform hashes.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for types other than `Key`; fold the bytes in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

/// A hash map keyed by `Key`, in many small tables (see [`Shards`](crate::shards::Shards)).
pub type KeyMap<V> = crate::shards::Shards<Key, V, std::hash::BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        assert_eq!(Key::of("u1"), Key::of("u1"));
        assert_ne!(Key::of("u1"), Key::of("u2"));
        // Pinned: keys must not change between builds, or stored state would not match.
        assert_eq!(Key::of("").to_string(), "99aa06d3014798d86001c324468d497f");
    }
}
