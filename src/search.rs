//! The medicine search index: in memory, rebuilt at start-up, updated on every write.
//!
//! Why not the database's full-text search: SQLite's FTS5 and PostgreSQL's `tsvector` rank
//! differently, and neither tolerates typos without extensions (`pg_trgm`, `spellfix1`), so
//! "the same results on both backends" would be two tuned implementations. A catalog is
//! small (100 000 medicines is a few tens of MB here) and read far more than written, so one
//! index in the server answers identically on both, and `benches/search.rs` measures it.
//!
//! How it matches. Each medicine's name, generic name and brand are split into lower-case
//! words. A query word matches a medicine word exactly, as a prefix (query words of 2+
//! letters: "calp" finds "calpol"), or, for query words of 5+ letters, within one edit
//! (insertion, deletion, substitution or swap of neighbours: "paracetmol" finds
//! "paracetamol"). Typo candidates come from a deletion index (every word with one letter
//! removed), so a lookup costs a few hash probes instead of a scan. Every query word must
//! match. Ranking: fewer typos first, then the whole name equal to the query, then a name
//! that starts with it, then exact over prefix matches (name words count more than generic
//! or brand words), then name, then id.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use uuid::Uuid;

use crate::store::catalog::Medicine;

/// Which field a word came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name = 0,
    Generic = 1,
    Brand = 2,
}

#[derive(Debug, Clone, Copy)]
struct Posting {
    slot: u32,
    field: Field,
}

/// How a query word matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Typo = 1,
    Prefix = 2,
    Exact = 3,
}

/// Words shorter than this are never matched with a typo.
const TYPO_MIN_LEN: usize = 5;
/// Query words shorter than this match exactly only.
const PREFIX_MIN_LEN: usize = 2;

/// Splits text into lower-case alphanumeric words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Every string made by removing one character from `word`.
fn deletions(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    (0..chars.len())
        .map(|i| chars[..i].iter().chain(&chars[i + 1..]).collect())
        .collect()
}

/// Whether `a` and `b` differ by at most one insertion, deletion, substitution or swap of
/// adjacent characters.
pub fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    match long.len() - short.len() {
        0 => {
            let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            match diffs.as_slice() {
                [] | [_] => true,
                [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
                _ => false,
            }
        }
        1 => {
            let first_diff = (0..short.len())
                .find(|&i| short[i] != long[i])
                .unwrap_or(short.len());
            short[first_diff..] == long[first_diff + 1..]
        }
        _ => false,
    }
}

/// The index. Not thread-safe by itself; the server keeps it behind an `RwLock`.
#[derive(Default)]
pub struct MedicineIndex {
    /// Slot → medicine; `None` once deleted or replaced.
    docs: Vec<Option<Arc<Medicine>>>,
    /// Normalised full name per slot (for "whole name equals the query").
    names: Vec<String>,
    slot_of: HashMap<Uuid, u32>,
    postings: HashMap<String, Vec<Posting>>,
    /// Every word, sorted, for prefix lookups.
    vocabulary: BTreeSet<String>,
    /// A word with one character removed → the words it came from.
    deletion_index: HashMap<String, Vec<String>>,
    dead: usize,
}

/// One page of results and how many matched in all.
#[derive(Debug)]
pub struct Hits {
    pub items: Vec<Arc<Medicine>>,
    pub total: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Score {
    /// Query word number + 1 that last matched this slot (deduplicates within a word).
    stamp: u32,
    words: u32,
    typos: u32,
    points: u32,
}

impl MedicineIndex {
    pub fn build(medicines: impl IntoIterator<Item = Medicine>) -> Self {
        let mut index = Self::default();
        for m in medicines {
            index.upsert(m);
        }
        index
    }

    /// Live medicines in the index.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Adds a medicine, or replaces the one with the same id.
    pub fn upsert(&mut self, medicine: Medicine) {
        self.remove(medicine.id);
        let slot = u32::try_from(self.docs.len()).expect("fewer than 4 billion medicines");
        let fields = [
            (Field::Name, Some(medicine.name.as_str())),
            (Field::Generic, medicine.generic_name.as_deref()),
            (Field::Brand, medicine.brand.as_deref()),
        ];
        for (field, text) in fields {
            for word in text.map(words).unwrap_or_default() {
                self.add_word(&word, Posting { slot, field });
            }
        }
        self.names.push(words(&medicine.name).join(" "));
        self.slot_of.insert(medicine.id, slot);
        self.docs.push(Some(Arc::new(medicine)));
    }

    fn add_word(&mut self, word: &str, posting: Posting) {
        let list = self.postings.entry(word.to_owned()).or_default();
        if list
            .last()
            .is_some_and(|p| p.slot == posting.slot && p.field == posting.field)
        {
            return;
        }
        list.push(posting);
        if self.vocabulary.insert(word.to_owned()) && word.chars().count() >= TYPO_MIN_LEN - 1 {
            for d in deletions(word) {
                self.deletion_index
                    .entry(d)
                    .or_default()
                    .push(word.to_owned());
            }
        }
    }

    /// Removes a medicine (its postings die lazily; the index compacts itself when more
    /// than half of it is dead).
    pub fn remove(&mut self, id: Uuid) {
        if let Some(slot) = self.slot_of.remove(&id) {
            self.docs[slot as usize] = None;
            self.dead += 1;
            if self.dead > 1_000 && self.dead > self.slot_of.len() {
                let live: Vec<Medicine> =
                    self.docs.iter().flatten().map(|m| (**m).clone()).collect();
                *self = Self::build(live);
            }
        }
    }

    /// The words of the vocabulary a query word can match, with how.
    fn expand(&self, word: &str) -> Vec<(&str, Kind)> {
        let mut out: Vec<(&str, Kind)> = Vec::new();
        if let Some((w, _)) = self.postings.get_key_value(word) {
            out.push((w.as_str(), Kind::Exact));
        }
        let len = word.chars().count();
        if len >= PREFIX_MIN_LEN {
            out.extend(
                self.vocabulary
                    .range::<str, _>((Bound::Included(word), Bound::Unbounded))
                    .take_while(|w| w.starts_with(word))
                    .filter(|w| w.as_str() != word)
                    .map(|w| (w.as_str(), Kind::Prefix)),
            );
        }
        if len >= TYPO_MIN_LEN {
            let mut typos: Vec<&str> = Vec::new();
            let mut consider = |candidate: &str| {
                if let Some((w, _)) = self.postings.get_key_value(candidate) {
                    typos.push(w.as_str());
                }
            };
            // The query has one extra character: one of its deletions is a word.
            for d in deletions(word) {
                consider(&d);
                // Substitutions and swaps: the query and the word share a deletion.
                if let Some(sources) = self.deletion_index.get(&d) {
                    for s in sources {
                        consider(s);
                    }
                }
            }
            // The query lacks a character: it is a deletion of the word.
            if let Some(sources) = self.deletion_index.get(word) {
                for s in sources {
                    consider(s);
                }
            }
            typos.sort_unstable();
            typos.dedup();
            out.extend(
                typos
                    .into_iter()
                    .filter(|w| *w != word && !w.starts_with(word) && within_one_edit(word, w))
                    .map(|w| (w, Kind::Typo)),
            );
        }
        out
    }

    /// Ranked search; `offset` and `limit` select the page.
    pub fn search(&self, query: &str, offset: usize, limit: usize) -> Hits {
        let query_words = words(query);
        if query_words.is_empty() {
            return Hits {
                items: Vec::new(),
                total: 0,
            };
        }
        let mut scores: HashMap<u32, Score> = HashMap::new();
        for (i, word) in query_words.iter().enumerate() {
            let stamp = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut matched = self.expand(word);
            // Best kind first, so a slot's first match for this word is its best.
            matched.sort_by_key(|(_, kind)| Reverse(*kind));
            for (w, kind) in matched {
                for p in &self.postings[w] {
                    if self.docs[p.slot as usize].is_none() {
                        continue;
                    }
                    let s = scores.entry(p.slot).or_default();
                    // A slot must match every earlier word to stay a candidate.
                    if s.stamp == stamp || s.words != stamp - 1 {
                        continue;
                    }
                    s.stamp = stamp;
                    s.words += 1;
                    s.typos += u32::from(kind == Kind::Typo);
                    let field_weight = if p.field == Field::Name { 2 } else { 1 };
                    s.points += kind as u32 * 10 * field_weight;
                }
            }
        }
        let wanted = u32::try_from(query_words.len()).unwrap_or(u32::MAX);
        let whole = query_words.join(" ");
        let mut ranked: Vec<(u32, Score)> = scores
            .into_iter()
            .filter(|(_, s)| s.words == wanted)
            .collect();
        let total = ranked.len();
        let key = |(slot, s): &(u32, Score)| {
            let name = &self.names[*slot as usize];
            (
                s.typos,
                Reverse(*name == whole),
                Reverse(name.starts_with(&whole)),
                Reverse(s.points),
                name.as_str(),
                self.docs[*slot as usize].as_ref().map(|m| m.id),
            )
        };
        let end = offset.saturating_add(limit).min(total);
        if offset >= end {
            return Hits {
                items: Vec::new(),
                total,
            };
        }
        // Only the first `end` need to be in order.
        if end < total {
            ranked.select_nth_unstable_by(end, |a, b| key(a).cmp(&key(b)));
            ranked.truncate(end);
        }
        ranked.sort_by(|a, b| key(a).cmp(&key(b)));
        let items = ranked[offset..end]
            .iter()
            .filter_map(|(slot, _)| self.docs[*slot as usize].clone())
            .collect();
        Hits { items, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn med(name: &str, generic: Option<&str>, brand: Option<&str>) -> Medicine {
        Medicine {
            id: Uuid::now_v7(),
            name: name.into(),
            generic_name: generic.map(Into::into),
            brand: brand.map(Into::into),
            sku: format!("SKU-{}", Uuid::now_v7().simple()),
            price_cents: 100,
            rx_required: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn names(index: &MedicineIndex, q: &str) -> Vec<String> {
        index
            .search(q, 0, 20)
            .items
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    fn sample() -> MedicineIndex {
        MedicineIndex::build([
            med(
                "Paracetamol 500 mg Tablet",
                Some("Paracetamol"),
                Some("Calpol"),
            ),
            med(
                "Paracetamol 650 mg Tablet",
                Some("Paracetamol"),
                Some("Dolo"),
            ),
            med(
                "Calpol Infant Suspension",
                Some("Paracetamol"),
                Some("Calpol"),
            ),
            med("Ibuprofen 400 mg Tablet", Some("Ibuprofen"), Some("Brufen")),
            med("Paraffin Liquid", None, None),
            med(
                "Cetirizine 10 mg Tablet",
                Some("Cetirizine"),
                Some("Zyrtec"),
            ),
        ])
    }

    #[test]
    fn one_edit() {
        assert!(within_one_edit("paracetmol", "paracetamol"));
        assert!(within_one_edit("paracetamol", "paracetmol"));
        assert!(within_one_edit("ibuprofan", "ibuprofen"));
        assert!(within_one_edit("ibuporfen", "ibuprofen"));
        assert!(!within_one_edit("ibpurofne", "ibuprofen"));
        assert!(!within_one_edit("para", "paracetamol"));
    }

    #[test]
    fn typos_prefixes_and_brands() {
        let index = sample();
        let found = names(&index, "paracetmol");
        assert!(
            found.contains(&"Paracetamol 500 mg Tablet".to_owned()),
            "{found:?}"
        );
        assert_eq!(names(&index, "calp")[0], "Calpol Infant Suspension");
        assert!(names(&index, "brufen").contains(&"Ibuprofen 400 mg Tablet".to_owned()));
        assert!(names(&index, "ibuporfen").contains(&"Ibuprofen 400 mg Tablet".to_owned()));
        // Short words are never matched with a typo.
        assert!(names(&index, "dolu").is_empty());
        assert!(names(&index, "nothing-like-it").is_empty());
    }

    #[test]
    fn exact_and_prefix_rank_before_typos() {
        let index = MedicineIndex::build([
            med("Paracetamol", None, None),
            med("Paracetamol Syrup", None, None),
            med("Paracetamols", None, None),
        ]);
        // "paracetamol" is exact for two, prefix for "paracetamols".
        assert_eq!(
            names(&index, "paracetamol"),
            vec!["Paracetamol", "Paracetamol Syrup", "Paracetamols"]
        );
        let index = MedicineIndex::build([
            med("Amoxicillin", None, None),
            med("Amoxycillin", None, None),
        ]);
        assert_eq!(
            names(&index, "amoxycillin"),
            vec!["Amoxycillin", "Amoxicillin"]
        );
    }

    #[test]
    fn all_words_must_match_and_pages_are_stable() {
        let index = sample();
        assert_eq!(
            names(&index, "paracetamol 650"),
            vec!["Paracetamol 650 mg Tablet"]
        );
        let all = index.search("tablet", 0, 10);
        assert_eq!(all.total, 4);
        let p1 = index.search("tablet", 0, 2);
        let p2 = index.search("tablet", 2, 2);
        assert_eq!(p1.total, 4);
        let paged: Vec<Uuid> = p1.items.iter().chain(&p2.items).map(|m| m.id).collect();
        let whole: Vec<Uuid> = all.items.iter().map(|m| m.id).collect();
        assert_eq!(paged, whole);
        assert!(index.search("tablet", 10, 2).items.is_empty());
    }

    #[test]
    fn updates_and_deletes_show_at_once() {
        let mut index = sample();
        let mut m = med("Zincovit", None, None);
        index.upsert(m.clone());
        assert_eq!(names(&index, "zincovit"), vec!["Zincovit"]);
        m.name = "Zinconia".into();
        index.upsert(m.clone());
        assert!(names(&index, "zincovit").is_empty());
        assert_eq!(names(&index, "zinconia"), vec!["Zinconia"]);
        index.remove(m.id);
        assert!(names(&index, "zinconia").is_empty());
        assert_eq!(index.len(), 6);
    }
}
