//! A hash map split into many small tables, for state kept per user. A table grows by
//! rehashing only itself, so a map of millions of users never stops a round for the tens of
//! milliseconds one big rehash takes (the traits' map did, at 300,000 keys: 60 ms, most of it
//! the kernel zeroing the new table). Lookups cost one extra shift and mask.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::hash_map::{self, HashMap};
use std::hash::{BuildHasher, Hash};

/// log2 of the number of tables.
const BITS: u32 = 10;
/// Which hash bits pick the table: above those a table of fewer than 2^40 buckets indexes
/// by, and below the 7 top bits it tags entries with, so the tables stay evenly used.
const SHIFT: u32 = 40;

/// A hash map of `2^10` tables, chosen by bits 40-49 of the key's hash.
#[derive(Clone, Debug)]
pub struct Shards<K, V, S> {
    tables: Box<[HashMap<K, V, S>]>,
    hasher: S,
}

impl<K, V, S: BuildHasher + Default> Default for Shards<K, V, S> {
    fn default() -> Self {
        Shards { tables: (0..1 << BITS).map(|_| HashMap::with_hasher(S::default())).collect(), hasher: S::default() }
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> Shards<K, V, S> {
    fn index<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        ((self.hasher.hash_one(key) >> SHIFT) as usize) & ((1 << BITS) - 1)
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tables[self.index(key)].get(key)
    }

    /// The value of `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.index(key);
        self.tables[i].get_mut(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets `key`'s value; returns the one it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let i = self.index(&key);
        self.tables[i].insert(key, value)
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.index(key);
        self.tables[i].remove(key)
    }

    /// `key`'s entry, to read, insert or change in place.
    pub fn entry(&mut self, key: K) -> hash_map::Entry<'_, K, V> {
        let i = self.index(&key);
        self.tables[i].entry(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(HashMap::is_empty)
    }

    /// Every `(key, value)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.tables.iter().flat_map(HashMap::iter)
    }

    /// Removes and yields every `(key, value)`.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.tables.iter_mut().flat_map(HashMap::drain)
    }

    /// Removes every key, keeping the tables' memory.
    pub fn clear(&mut self) {
        self.tables.iter_mut().for_each(HashMap::clear);
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> FromIterator<(K, V)> for Shards<K, V, S> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Shards::default();
        map.extend(iter);
        map
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> Extend<(K, V)> for Shards<K, V, S> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, V, S> IntoIterator for Shards<K, V, S> {
    type Item = (K, V);
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<HashMap<K, V, S>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.tables.into_vec().into_iter().flatten()
    }
}

/// Serialized as one map, its length first (as formats such as bincode need).
impl<K: Serialize, V: Serialize, S> Serialize for Shards<K, V, S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.tables.iter().map(HashMap::len).sum()))?;
        for (k, v) in self.tables.iter().flat_map(HashMap::iter) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K, V, S> Deserialize<'de> for Shards<K, V, S>
where
    K: Deserialize<'de> + Hash + Eq,
    V: Deserialize<'de>,
    S: BuildHasher + Default,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map: HashMap<K, V, S> = Deserialize::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Key, KeyHasher};
    use std::hash::BuildHasherDefault;

    #[test]
    fn behaves_as_one_map_and_spreads_keys_over_the_tables() {
        let mut map: Shards<Key, u32, BuildHasherDefault<KeyHasher>> = Shards::default();
        let mut reference = std::collections::HashMap::new();
        for i in 0..20_000u32 {
            let key = Key::of(&format!("u{}", i % 7_000));
            match i % 5 {
                0 => assert_eq!(map.remove(&key), reference.remove(&key)),
                1 => *map.entry(key).or_insert(0) += i,
                _ => assert_eq!(map.insert(key, i), reference.insert(key, i)),
            }
            if i % 5 == 1 {
                *reference.entry(key).or_insert(0) += i;
            }
        }
        assert_eq!(map.len(), reference.len());
        for (k, v) in &reference {
            assert_eq!(map.get(k), Some(v));
        }
        let used = map.tables.iter().filter(|t| !t.is_empty()).count();
        let fullest = map.tables.iter().map(HashMap::len).max().unwrap_or(0);
        assert!(used > 1000 && fullest < 20, "{used} tables used, the fullest holds {fullest}");
        let text = serde_json::to_string(&map).unwrap();
        let back: Shards<Key, u32, BuildHasherDefault<KeyHasher>> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.len(), reference.len());
        let drained: std::collections::HashMap<Key, u32> = map.drain().collect();
        assert_eq!(drained, reference);
        assert!(map.is_empty());
    }
}
