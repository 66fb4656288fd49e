//! The settings, turned into each component's options, in one place.
//!
//! Components take plain option structs, not the settings: they can be built in tests
//! without a settings file, and a setting read here is read once, under the guide's
//! name, for every caller. `rilld run`, the source job and the daemon (its jobs and its
//! target role) all call these functions, so a setting means the same thing wherever it
//! applies.

use std::sync::Arc;

use crate::events::EventLog;
use crate::net::link::LinkConfig;
use crate::net::proto::Compression;
use crate::replica::apply::ApplyOptions;
use crate::replica::{FailoverConfig, TargetConfig};
use crate::settings::{CallbackMode, Settings};
use crate::source::mirror::{CompareOptions, Method, MirrorOptions, Overwrite};
use crate::source::resolve::ResolveOptions;
use crate::source::transmit::TransmitOptions;
use crate::storage::job_store::StoredJob;
use crate::storage::queue::{AtLimit, Limits};

/// What the source reads of each operation (`DisableAttributeReplication`,
/// `ExtendedAttributes`).
pub fn resolve_options(settings: &Settings) -> ResolveOptions {
    ResolveOptions {
        attributes: !settings.disable_attribute_replication(),
        xattrs: settings.extended_attributes(),
    }
}

/// What the target applies, and how long it keeps written files open (`TGCloseDelay`).
pub fn apply_options(settings: &Settings) -> ApplyOptions {
    ApplyOptions {
        attributes: !settings.disable_attribute_replication(),
        xattrs: settings.extended_attributes(),
        close_delay: settings.tg_close_delay(),
    }
}

/// The transmit loop's settings.
pub fn transmit_options(settings: &Settings) -> TransmitOptions {
    TransmitOptions {
        hp_queue_ratio: settings.hp_queue_ratio(),
        mirror: MirrorOptions {
            chunk_bytes: settings.mirror_chunk_size_bytes(),
            small_file_bytes: settings.small_file_threshold_bytes(),
            zero_k_files: settings.mirror_zero_k_files(),
            sparse: settings.enable_sparse_file_mirroring(),
            attributes: !settings.disable_attribute_replication(),
            xattrs: settings.extended_attributes(),
            orphan_names_per_op: match settings.max_remove_orphans_op_size() {
                0 => usize::MAX,
                n => n as usize,
            },
            compare: first_mirror_compare(settings),
        },
        remirror_method: Method::from_setting(settings.auto_remirror(), settings.checksum_all()),
        // As long as a verification waits for an answer (`verify_options`).
        answer_wait: settings.network_timeout() * 2,
        calculate: settings.calculate_on_connect(),
        use_change_journal: settings.use_change_journal(),
    }
}

/// What a first mirror compares with the replica: only what `MirrorOverwrite` needs
/// (`AutoRemirror` is for remirrors; the transmit loop sets it on theirs).
fn first_mirror_compare(settings: &Settings) -> CompareOptions {
    CompareOptions {
        overwrite: Overwrite::from_setting(settings.mirror_overwrite()),
        method: Method::Whole,
        max_blocks: settings.max_checksum_blocks(),
    }
}

/// The queue's limits (a source job's, and each replica session's target queue).
pub fn queue_limits(settings: &Settings) -> Limits {
    Limits {
        memory_bytes: settings.q_memory_buffer_max_bytes(),
        memory_ops: settings.op_buffer_size().unwrap_or(u64::MAX),
        spill_percent: settings.memory_queue_to_disk_threshold(),
        alert_percent: settings.queue_size_alert_threshold(),
        at_limit: match settings.memory_allocator_callback_mode() {
            CallbackMode::AutoDisconnect => AtLimit::AutoDisconnect,
            CallbackMode::StopDraining => AtLimit::StopDraining,
            // QJournalSpaceMax = 0 disables disk queuing: what does not fit is journaled.
            CallbackMode::QueueToDisk if !settings.disk_queue_enabled() => AtLimit::AutoDisconnect,
            CallbackMode::QueueToDisk => AtLimit::QueueToDisk,
        },
    }
}

/// The target role's settings, as each new connection takes them.
pub(crate) fn target_config(settings: &Settings, host: &str) -> TargetConfig {
    TargetConfig {
        host: host.to_string(),
        state_dir: settings.data_path().join("target"),
        queue_limits: queue_limits(settings),
        timeout: settings.network_timeout(),
        apply: apply_options(settings),
        capacity_high: settings.tg_mirror_capacity_high(),
        capacity_low: settings.tg_mirror_capacity_low(),
        retry_limit: settings.tg_execution_retry_limit(),
        retry_wait: settings.tg_retry_locked(),
        log_all_orphans: settings.log_all_orphans(),
        failover: FailoverConfig {
            ping_frequency: settings.ping_frequency(),
            missed_packets: settings.missed_packets(),
            user_intervention: settings.user_intervention(),
            pre_failover_wait: settings.pre_failover_wait(),
            pre_failback_wait: settings.pre_failback_wait(),
        },
    }
}

/// The link of a stored job to its target, from this host (`host`) with its TLS client
/// configuration; `mirror` says whether the job starts with a full mirror. `None` when the
/// job's target is a directory on this host, which no link reaches.
pub(crate) fn link_config(
    settings: &Settings,
    job: &StoredJob,
    host: &str,
    tls: Arc<rustls::ClientConfig>,
    mirror: bool,
    log: Option<Arc<EventLog>>,
) -> Option<LinkConfig> {
    Some(LinkConfig {
        address: job.spec.target.address()?,
        job: job.spec.name.clone(),
        target_path: job.spec.target.path().to_string_lossy().into_owned(),
        host: host.to_string(),
        tls,
        pending_acks: settings.source_pending_acks().max(1) as usize,
        timeout: settings.network_timeout(),
        keep_alive: settings
            .hb_external_rate()
            .map_or(settings.network_keep_alive_interval(), |hb| {
                hb.min(settings.network_keep_alive_interval())
            }),
        silence: settings.hb_ttl().map_or(settings.network_timeout(), |ttl| {
            ttl.min(settings.network_timeout())
        }),
        retry: settings.network_retry(),
        auto_reconnect: settings.auto_reconnect(),
        auto_retransmit: settings.auto_retransmit(),
        compression: Compression {
            min_file_size: settings.min_compression_file_size_bytes(),
            skip_ext: settings.skip_compression_file_ext(),
            level: settings.compression_level(),
            enabled: settings.compression_enabled(),
        },
        bandwidth: settings.bandwidth_limit_bytes_per_sec(),
        mirror,
        log,
    })
}

/// A verification's options: the settings (`ChecksumAll`, `MaxChecksumBlocks`, the
/// `Verify*` settings, `LogDir`), and what the command asked for on top.
pub(crate) fn verify_options(
    settings: &Settings,
    checksums: bool,
    remirror: bool,
) -> crate::verify::run::VerifyOptions {
    crate::verify::run::VerifyOptions {
        checksums: checksums || settings.checksum_all(),
        remirror,
        skip_empty_files: !settings.mirror_zero_k_files(),
        max_blocks: settings.max_checksum_blocks(),
        compared: crate::verify::Compared {
            owner_and_mode: !settings.disable_attribute_replication(),
            xattrs: settings.extended_attributes(),
        },
        retry_interval: settings.verify_retry_interval(),
        retry_limit: settings.verify_retry_limit(),
        log_path: settings.log_dir().join(settings.verify_log_name()),
        log_append: settings.verify_log_append(),
        log_limit: settings.verify_log_limit_bytes(),
        // Long enough for the stream ahead of the request to drain at a slow link's
        // pace, and for a reconnect: past it the request counts as failed and is retried.
        answer_timeout: settings.network_timeout() * 2,
    }
}
