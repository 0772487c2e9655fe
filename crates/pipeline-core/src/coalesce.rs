//! Coalescing a queue batch: writes grouped by key, the newest of each key
//! carried whole, the older ones only named (they end `superseded`), and
//! duplicate deliveries of one id folded together.
//!
//! One scheduler call per distinct key per batch follows from this.

use std::collections::BTreeMap;

use crate::schedule::WriteRef;

/// The writes of one key in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroup<T> {
    pub key: String,
    /// The newest write (by acceptance order).
    pub newest: T,
    /// Older distinct writes of the same key, oldest first.
    pub older: Vec<T>,
    /// Further deliveries of ids already in this group (at-least-once).
    pub duplicates: Vec<T>,
}

/// Groups `items` by key. `key_of` and `order_of` read an item's key and
/// ordering identity. Groups come out in key order.
pub fn group_by_key<T>(
    items: Vec<T>,
    key_of: impl Fn(&T) -> &str,
    order_of: impl Fn(&T) -> WriteRef,
) -> Vec<KeyGroup<T>> {
    let mut by_key: BTreeMap<String, Vec<(WriteRef, T)>> = BTreeMap::new();
    for item in items {
        let order = order_of(&item);
        by_key
            .entry(key_of(&item).to_string())
            .or_default()
            .push((order, item));
    }
    let mut groups = Vec::with_capacity(by_key.len());
    for (key, mut writes) in by_key {
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut distinct: Vec<(WriteRef, T)> = Vec::with_capacity(writes.len());
        let mut duplicates = Vec::new();
        for (order, item) in writes {
            match distinct.last() {
                Some((prev, _)) if prev.id == order.id => duplicates.push(item),
                _ => distinct.push((order, item)),
            }
        }
        let Some((_, newest)) = distinct.pop() else {
            continue;
        };
        let older = distinct.into_iter().map(|(_, item)| item).collect();
        groups.push(KeyGroup {
            key,
            newest,
            older,
            duplicates,
        });
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Item = (String, i64, String);

    fn group(items: Vec<Item>) -> Vec<KeyGroup<Item>> {
        group_by_key(items, |i| i.0.as_str(), |i| WriteRef::new(i.1, i.2.clone()))
    }

    fn it(k: &str, ms: i64, id: &str) -> Item {
        (k.into(), ms, id.into())
    }

    #[test]
    fn newest_per_key_wins_and_duplicates_fold() {
        let g = group(vec![
            it("a", 3, "x"),
            it("b", 1, "y"),
            it("a", 5, "z"),
            it("a", 3, "x"),
            it("a", 1, "w"),
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].key, "a");
        assert_eq!(g[0].newest.2, "z");
        assert_eq!(
            g[0].older.iter().map(|i| i.2.as_str()).collect::<Vec<_>>(),
            ["w", "x"]
        );
        assert_eq!(g[0].duplicates.len(), 1);
        assert_eq!(g[1].newest.2, "y");
        assert!(g[1].older.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn every_item_lands_in_exactly_one_role(raw in proptest::collection::vec((0u8..4, 0i64..20, 0u8..30), 0..80)) {
            let items: Vec<Item> = raw.iter().map(|(k, t, id)| (format!("k{k}"), *t, format!("{k}-{t}-{id}"))).collect();
            let n = items.len();
            let groups = group(items.clone());
            let total: usize = groups.iter().map(|g| 1 + g.older.len() + g.duplicates.len()).sum();
            prop_assert_eq!(total, n);
            for g in &groups {
                let newest = WriteRef::new(g.newest.1, g.newest.2.clone());
                let max = items.iter().filter(|i| i.0 == g.key).map(|i| WriteRef::new(i.1, i.2.clone())).max();
                prop_assert_eq!(Some(newest), max);
            }
        }
    }
}
