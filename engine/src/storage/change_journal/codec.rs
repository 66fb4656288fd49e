//! The on-disk value of one journal entry, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | value format (1) |
//! | 1 | flags: bit 0 whole file |
//! | 4 | reasons bitset |
//! | 8 | version |
//! | 8 | first_ns |
//! | 8 | last_ns |
//! | 8 | count |
//! | 4 | number of ranges *n* |
//! | 16 × *n* | ranges as `start`, `end` (half-open), sorted, disjoint, not touching |
//!
//! The key is the path's raw bytes; which table holds the value says whether it is a file or
//! a subtree. Decoding checks everything, so a damaged value is an error, never a panic.

use super::ranges;

const VALUE_FORMAT: u8 = 1;
const FLAG_WHOLE: u8 = 1;
const HEADER: usize = 1 + 1 + 4 + 8 * 4 + 4;

/// One entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rec {
    pub whole: bool,
    /// half-open `[start, end)`
    pub ranges: Vec<(u64, u64)>,
    pub reasons: u32,
    pub version: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u64,
}

impl Rec {
    /// An entry that no mark has touched yet.
    pub fn empty() -> Rec {
        Rec {
            whole: false,
            ranges: Vec::new(),
            reasons: 0,
            version: 0,
            first_ns: u64::MAX,
            last_ns: 0,
            count: 0,
        }
    }

    /// Counts one more mark with `reason` at `ns`.
    pub fn note(&mut self, reason: u32, ns: u64) {
        self.reasons |= reason;
        self.first_ns = self.first_ns.min(ns);
        self.last_ns = self.last_ns.max(ns);
        self.count = self.count.saturating_add(1);
    }

    /// Applies one mark: `None` is the whole file, `Some((offset, 0))` the metadata only.
    pub fn apply(&mut self, range: Option<(u64, u64)>, reason: u32, ns: u64, max_ranges: usize) {
        self.note(reason, ns);
        match range {
            None => self.make_whole(),
            Some((offset, len)) => {
                if !self.whole && len > 0 {
                    ranges::insert(&mut self.ranges, offset, offset.saturating_add(len));
                    if self.ranges.len() > max_ranges {
                        self.make_whole();
                    }
                }
            }
        }
    }

    pub fn make_whole(&mut self) {
        self.whole = true;
        self.ranges = Vec::new();
    }

    /// Folds `other` (an entry absorbed by this one) in: its reasons, times and count.
    pub fn fold(&mut self, other: &Rec) {
        self.reasons |= other.reasons;
        self.first_ns = self.first_ns.min(other.first_ns);
        self.last_ns = self.last_ns.max(other.last_ns);
        self.count = self.count.saturating_add(other.count);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 16 * self.ranges.len());
        out.push(VALUE_FORMAT);
        out.push(if self.whole { FLAG_WHOLE } else { 0 });
        out.extend_from_slice(&self.reasons.to_le_bytes());
        for v in [self.version, self.first_ns, self.last_ns, self.count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        // at most max_ranges (a usize setting, in practice tens) ranges are ever stored
        let n = u32::try_from(self.ranges.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for &(s, e) in self.ranges.iter().take(n as usize) {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Rec, String> {
        if bytes.len() < HEADER {
            return Err(format!(
                "value is {} bytes, shorter than its header",
                bytes.len()
            ));
        }
        if bytes[0] != VALUE_FORMAT {
            return Err(format!("unknown value format {}", bytes[0]));
        }
        let flags = bytes[1];
        if flags & !FLAG_WHOLE != 0 {
            return Err(format!("unknown flags {flags:#x}"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let n = u32_at(HEADER - 4) as usize;
        if bytes.len() != HEADER + 16 * n {
            return Err(format!(
                "value is {} bytes but says it holds {n} ranges",
                bytes.len()
            ));
        }
        let ranges: Vec<(u64, u64)> = (0..n)
            .map(|i| (u64_at(HEADER + 16 * i), u64_at(HEADER + 16 * i + 8)))
            .collect();
        if !ranges::is_canonical(&ranges) {
            return Err("ranges are not sorted and disjoint".to_string());
        }
        let whole = flags & FLAG_WHOLE != 0;
        if whole && n != 0 {
            return Err("a whole-file entry also lists ranges".to_string());
        }
        Ok(Rec {
            whole,
            ranges,
            reasons: u32_at(2),
            version: u64_at(6),
            first_ns: u64_at(14),
            last_ns: u64_at(22),
            count: u64_at(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rec {
        Rec {
            whole: false,
            ranges: vec![(0, 10), (20, 4096), (u64::MAX - 1, u64::MAX)],
            reasons: 0b1010_0001,
            version: 77,
            first_ns: 5,
            last_ns: 9,
            count: 3,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(Rec::decode(&r.encode()).unwrap(), r);
        let mut w = sample();
        w.make_whole();
        assert_eq!(Rec::decode(&w.encode()).unwrap(), w);
    }

    #[test]
    fn damaged_values_are_errors() {
        let good = sample().encode();
        // every truncation
        for len in 0..good.len() {
            assert!(Rec::decode(&good[..len]).is_err(), "truncated to {len}");
        }
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(Rec::decode(&bad).is_err());
        let mut bad = good.clone();
        bad[1] = 0x80;
        assert!(Rec::decode(&bad).is_err());
        // unsorted ranges
        let mut r = sample();
        r.ranges.swap(0, 1);
        assert!(Rec::decode(&r.encode()).is_err());
        // whole with ranges
        let mut r = sample();
        r.whole = true;
        assert!(Rec::decode(&r.encode()).is_err());
        // random bytes never panic
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = Rec::decode(&v);
        }
    }
}
