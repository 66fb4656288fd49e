//! Captured events: parsing `capture --json` output and comparing it exactly.
//!
//! Events stay `serde_json::Value`s, the form the CLI prints, so a test checks every field
//! the driver emits. [`summary`] drops the fields a test cannot predict (`seq`, `pid`,
//! `tid`, `ktime_ns`); everything else (kind, path, per-kind fields) is compared exactly
//! against expectations built with [`op!`](crate::op).

use std::path::Path;

use serde_json::Value;

/// Fields a test cannot predict: numbering, process, time, and which file a call by name
/// reached and whether through a link (the capture's reader looks after the call, when a
/// later operation may have removed the name already). Checked separately.
const UNPREDICTABLE: &[&str] = &[
    "seq",
    "pid",
    "tid",
    "ktime_ns",
    "reached_ino",
    "reached_through_link",
];

/// Parses one JSON object per non-empty line; panics naming the line that is not one.
pub fn parse_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => v,
            _ => panic!("capture printed a line that is not a JSON object: {l:?}"),
        })
        .collect()
}

/// The events whose `pid` is `pid`.
pub fn of_pid(events: &[Value], pid: u32) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["pid"].as_u64() == Some(pid as u64))
        .cloned()
        .collect()
}

/// The event without the fields a test cannot predict.
pub fn summary(ev: &Value) -> Value {
    let mut v = ev.clone();
    if let Value::Object(m) = &mut v {
        // retain keeps the order the driver printed (remove would swap fields around).
        m.retain(|k, _| !UNPREDICTABLE.contains(&k.as_str()));
    }
    v
}

/// The event's kind ("" if missing).
pub fn kind(ev: &Value) -> &str {
    ev["kind"].as_str().unwrap_or("")
}

/// The event's path ("" if missing).
pub fn path(ev: &Value) -> &str {
    ev["path"].as_str().unwrap_or("")
}

/// Panics unless every event has a `seq` and they are strictly increasing.
pub fn assert_seq_increasing(events: &[Value]) {
    let mut last: Option<u64> = None;
    for ev in events {
        let seq = ev["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("event without a numeric seq: {ev}"));
        if let Some(prev) = last {
            assert!(
                seq > prev,
                "seq not strictly increasing: {seq} after {prev} (event {ev})"
            );
        }
        last = Some(seq);
    }
}

/// A path as the JSON string the driver prints.
pub fn path_str(p: impl AsRef<Path>) -> String {
    p.as_ref()
        .to_str()
        .expect("test paths are UTF-8")
        .to_string()
}

/// Builds an expected event: `op!("write", dir.join("f"), offset = 0, len = 5, inline =
/// true)`. Values go through `serde_json::json!`; paths through [`path_str`].
#[macro_export]
macro_rules! op {
    ($kind:expr, $path:expr $(, $k:ident = $v:expr)* $(,)?) => {{
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), serde_json::json!($kind));
        m.insert("path".into(), serde_json::json!($crate::events::path_str(&$path)));
        $( m.insert(stringify!($k).into(), serde_json::json!($v)); )*
        serde_json::Value::Object(m)
    }};
}

/// Panics unless the summaries of `actual` equal `expected`, element by element, showing
/// both sequences and the first difference.
pub fn assert_ops(actual: &[Value], expected: &[Value], context: &str) {
    let got: Vec<Value> = actual.iter().map(summary).collect();
    if got == expected {
        return;
    }
    let first = got
        .iter()
        .zip(expected)
        .position(|(g, e)| g != e)
        .unwrap_or(got.len().min(expected.len()));
    let show = |v: &[Value]| {
        v.iter()
            .enumerate()
            .map(|(i, e)| format!("  [{i}] {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{context}: captured sequence differs from the expected one at index {first} \
         ({} captured, {} expected)\nexpected:\n{}\ncaptured:\n{}",
        got.len(),
        expected.len(),
        show(expected),
        show(&got)
    );
}
