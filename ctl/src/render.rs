//! How `rillctl` shows what rilld answers: tables for people (the JSON is for programs).
//!
//! Values keep the guide's words ("In Progress", "Mirror Required") so what an operator
//! reads here can be looked up in the guide; labels are plain English, with the guide's
//! statistic name where a number would otherwise be ambiguous (ConRPL, ConRPT).

use rill_mgmt::{
    JobInfo, JobStatus, MirrorStatus, SettingRow, StatusReport, TargetSessionStatus, TargetStatus,
    TrustedPeer, VerifyStatus,
};

/// Width of the mirror progress bar, in characters between the brackets.
pub const BAR_WIDTH: usize = 20;

/// A byte count for people: `0 B`, `512 B`, `1.5 KB`, `120 MB`, `2.0 GB` (binary units, as
/// the settings' MB are). One decimal below 100 of a unit, none above.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // Rounding may reach the next unit ("1024 KB"): show it as the next unit.
    if value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 99.95 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separators: `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in seconds for people: `0.4 s`, `12 s`, `3 min 20 s`, `2 h 5 min`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "unknown".into();
    }
    if s < 10.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round() as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}

/// The mirror's progress: `[#########-----------] 45.2%  120 MB left`.
pub fn progress_bar(percent: f64, remaining: u64) -> String {
    let p = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let filled = ((p / 100.0) * BAR_WIDTH as f64).round() as usize;
    let filled = filled.min(BAR_WIDTH);
    format!(
        "[{}{}] {p:.1}%  {} left",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        bytes(remaining)
    )
}

/// Rows under headers, columns padded to their widest cell, two spaces apart; the last
/// column is not padded (no trailing blanks).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `rillctl status`: the host, each job as a block of labelled lines, then the target
/// sessions as a table.
pub fn status(report: &StatusReport) -> String {
    let mut out = format!(
        "Host {}  roles: {}  DriverQueuePercent: {:.1}%\n",
        report.host, report.roles, report.driver_queue_percent
    );
    if report.jobs.is_empty() {
        out.push_str(
            "\nNo jobs. Create one with `rillctl job create NAME --source DIR \
             --target HOST[:PORT] --target-path DIR`.\n",
        );
    }
    for job in &report.jobs {
        out.push('\n');
        out.push_str(&job_block(job));
    }
    if let Some(target) = &report.target {
        out.push('\n');
        out.push_str(&target_block(target));
    }
    out
}

fn job_block(j: &JobStatus) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("source", j.source.clone()),
        ("target", format!("{}  path {}", j.target, j.target_path)),
        (
            "connection",
            format!("{} (transmit {})", j.con_state, j.transmit_mode),
        ),
    ];
    if let Some(e) = &j.con_error {
        let tries = match e.attempts {
            1 => "1 attempt".to_string(),
            n => format!("{} attempts", count(n)),
        };
        lines.push((
            "failing",
            format!("{}: {} (since {}, {tries})", e.class, e.message, e.since),
        ));
    }
    let mirror = match j.mirror_status {
        MirrorStatus::InProgress | MirrorStatus::Waiting => format!(
            "{}  {}",
            j.mirror_status,
            progress_bar(j.con_mirror_percent, j.con_mirror_bytes_remaining)
        ),
        MirrorStatus::Calculating => format!("{} (sizing the source)", j.mirror_status),
        other => other.to_string(),
    };
    lines.push(("mirror", mirror));
    lines.push(("replication", j.replication_status.to_string()));
    lines.push(("target data", j.target_data_state.to_string()));
    lines.push((
        "queued",
        format!(
            "replication {} ops, {}; mirror {} ops, {}; on disk {}",
            count(j.con_ops_in_rep_queue),
            bytes(j.con_bytes_in_rep_queue),
            count(j.con_ops_in_mir_queue),
            bytes(j.con_bytes_in_mir_queue),
            bytes(j.con_bytes_in_disk_queue)
        ),
    ));
    lines.push((
        "sent",
        format!(
            "{} ops, {} ({} compressed); resent {} ops",
            count(j.con_ops_tx),
            bytes(j.con_bytes_tx),
            bytes(j.con_bytes_compressed_tx),
            count(j.con_resent_op_count)
        ),
    ));
    let synced = match &j.con_rpt {
        Some(t) => format!("; in sync up to {t} (ConRPT)"),
        None => String::new(),
    };
    lines.push(("lag", format!("{} (ConRPL){synced}", seconds(j.con_rpl))));
    if let Some(t) = &j.target_stats {
        lines.push((
            "at target",
            format!(
                "received {} ops, {} remaining, {} retries, {} dropped; queued {}, on disk {}",
                count(t.ops_received),
                count(t.ops_remaining),
                count(t.retries),
                count(t.ops_dropped),
                bytes(t.bytes_in_target_queue),
                bytes(t.bytes_in_target_disk_queue)
            ),
        ));
    }
    if let Some(v) = &j.verification {
        lines.push(("verification", verification(v)));
    }
    if let Some(s) = &j.verify_schedule {
        let flags = match (s.remirror, s.checksums) {
            (false, false) => "",
            (true, false) => ", remirroring what differs",
            (false, true) => ", by checksums",
            (true, true) => ", by checksums, remirroring what differs",
        };
        lines.push((
            "verified",
            format!("every {}{flags}", seconds(s.every_seconds as f64)),
        ));
    }
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = format!("Job {}  {}\n", j.name, j.state);
    for (label, value) in lines {
        out.push_str(&format!("  {label:<width$}  {value}\n"));
    }
    out
}

/// A verification's line: its state and ID, then what it found so far.
fn verification(v: &VerifyStatus) -> String {
    format!(
        "{} (ID {}): {} files ({}) equal, {} different, {} missing, {} extra, {} changed \
         while verified{}",
        v.state,
        v.id,
        count(v.files_verified),
        bytes(v.bytes_verified),
        count(v.differing),
        count(v.missing),
        count(v.extra),
        count(v.changed),
        match v.remirrored {
            0 => String::new(),
            n => format!("; {} remirrored", count(n)),
        }
    )
}

fn target_block(t: &TargetStatus) -> String {
    let mut out = format!(
        "As a target: {} logins, {} failed\n",
        count(t.logins),
        count(t.failed_logins)
    );
    if t.sessions.is_empty() {
        out.push_str("  no source jobs replicate to this host\n");
        return out;
    }
    let rows: Vec<Vec<String>> = t
        .sessions
        .iter()
        .map(|s| {
            vec![
                if s.peer_name.is_empty() {
                    "?".into()
                } else {
                    s.peer_name.clone()
                },
                short_fingerprint(&s.peer_fingerprint),
                s.job.clone(),
                s.target_path.clone(),
                s.target_data_state.to_string(),
                count(s.last_applied),
                count(s.counters.ops_received),
                count(s.ops_applied),
                count(s.counters.ops_remaining),
                count(s.counters.retries),
                count(s.counters.ops_dropped),
                bytes(s.counters.bytes_in_target_queue),
                bytes(s.counters.bytes_in_target_disk_queue),
                format!(
                    "{} files, {} dirs, {}",
                    count(s.orphan_files_removed),
                    count(s.orphan_directories_removed),
                    bytes(s.orphan_bytes_removed)
                ),
                failover_words(s),
            ]
        })
        .collect();
    let t = table(
        &[
            "PEER",
            "FINGERPRINT",
            "JOB",
            "TARGET PATH",
            "DATA STATE",
            "LAST SEQ",
            "RECEIVED",
            "APPLIED",
            "REMAINING",
            "RETRIES",
            "DROPPED",
            "QUEUE",
            "DISK QUEUE",
            "ORPHANS REMOVED",
            "FAILOVER",
        ],
        &rows,
    );
    for line in t.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A session's failover column: its state, whether the condition is met (the source
/// left its pings unanswered, event 6010), and the source's connections refused since.
fn failover_words(s: &TargetSessionStatus) -> String {
    let mut words = s.failover_state.words().to_string();
    if s.failover_condition {
        words.push_str(", condition met");
    }
    if s.refused_after_failover > 0 {
        words.push_str(&format!(
            ", source refused {}x",
            count(s.refused_after_failover)
        ));
    }
    words
}

/// The first 16 digits of a fingerprint: enough to tell peers apart at a glance.
fn short_fingerprint(fp: &str) -> String {
    match fp.char_indices().nth(16) {
        Some((i, _)) => format!("{}…", &fp[..i]),
        None => fp.to_string(),
    }
}

/// `rillctl job list`.
pub fn jobs(list: &[JobInfo]) -> String {
    if list.is_empty() {
        return "No jobs.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|j| {
            let rules: Vec<String> = j
                .spec
                .rules
                .iter()
                .map(|r| format!("{} {}", if r.include { "Inc" } else { "Exc" }, r.pattern))
                .collect();
            vec![
                j.spec.name.clone(),
                j.state.to_string(),
                j.mirror.to_string(),
                j.spec.source.display().to_string(),
                j.spec.target.address().unwrap_or_default(),
                j.spec.target.path().display().to_string(),
                rules.join(", "),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "MIRROR",
            "SOURCE",
            "TARGET",
            "TARGET PATH",
            "RULES",
        ],
        &rows,
    )
}

/// `rillctl settings list`.
pub fn settings(rows: &[SettingRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                with_unit(&r.value, &r.unit),
                with_unit(&r.default, &r.unit),
                if r.restart { "restart" } else { "live" }.into(),
                r.help.clone(),
            ]
        })
        .collect();
    table(
        &["NAME", "VALUE", "DEFAULT", "CHANGE", "DESCRIPTION"],
        &rows,
    )
}

/// `rillctl settings get NAME`: the value alone on the first line (for scripts), then what
/// it means.
pub fn setting(r: &SettingRow) -> String {
    let mut out = format!("{}\n", r.value);
    out.push_str(&format!("  {}: {}\n", r.name, r.help));
    if !r.allowed.is_empty() {
        out.push_str(&format!("  allowed: {}\n", r.allowed));
    }
    out.push_str(&format!(
        "  default: {}; a change {}\n",
        with_unit(&r.default, &r.unit),
        if r.restart {
            "takes effect when rilld restarts"
        } else {
            "takes effect without a restart"
        }
    ));
    out
}

fn with_unit(value: &str, unit: &str) -> String {
    if unit.is_empty() || value.parse::<f64>().is_err() {
        value.to_string()
    } else {
        format!("{value} {unit}")
    }
}

/// `rillctl trust list`.
pub fn trust(peers: &[TrustedPeer]) -> String {
    if peers.is_empty() {
        return "No trusted peers. Add one with `rillctl trust add NAME FINGERPRINT`.\n".into();
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let added = std::time::UNIX_EPOCH + std::time::Duration::from_secs(p.added_unix);
            vec![
                p.name.clone(),
                p.fingerprint.clone(),
                rill_mgmt::utc_time(added),
            ]
        })
        .collect();
    table(&["NAME", "FINGERPRINT", "ADDED (UTC)"], &rows)
}

/// `rillctl identity`: what another host's administrator needs to trust this one.
pub fn identity(name: &str, fingerprint: &str, certificate_pem: &str) -> String {
    let mut out = format!("name         {name}\nfingerprint  {fingerprint}\n\n");
    out.push_str(certificate_pem);
    if !certificate_pem.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "\nOn a peer: rillctl trust add {name} {fingerprint}\n"
    ));
    out
}
