//! Errors of the driver library. Each names what was wrong and, for bad input, what is
//! allowed, because administrators read them on a terminal.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(
        "rill-driver must run as root (CAP_SYS_ADMIN and CAP_BPF are needed to load eBPF programs)"
    )]
    NotRoot,
    #[error(
        "kernel BTF not found at {path}: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf { path: PathBuf },
    #[error("kernel BTF at {path} lacks {what}: {detail}")]
    BtfLayout {
        path: PathBuf,
        what: String,
        detail: String,
    },
    #[error("cannot mount {fs} at {path}: {source}")]
    Mount {
        fs: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the kernel refused eBPF program {program}: {detail}\nverifier log:\n{log}")]
    ProgramRefused {
        program: String,
        detail: String,
        log: String,
    },
    #[error("eBPF: {0}")]
    Ebpf(String),
    #[error("the driver is not loaded (run `rill-driver load`)")]
    NotLoaded,
    #[error(
        "another reader ({holder}) is draining the driver's ring; refusing to steal its records"
    )]
    RingBusy { holder: String },
    #[error("unknown setting `{name}`; settings are: {known}")]
    UnknownSetting { name: String, known: String },
    #[error("invalid value `{value}` for setting {name}: {allowed}")]
    BadValue {
        name: String,
        value: String,
        allowed: String,
    },
    #[error("settings file {path}: {detail}")]
    SettingsFile { path: PathBuf, detail: String },
    #[error("fanotify: {0}")]
    Fanotify(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt record from the ring: {0}")]
    Record(String),
}

pub type Result<T> = std::result::Result<T, DriverError>;

impl From<rill_ops::BadRecord> for DriverError {
    fn from(e: rill_ops::BadRecord) -> DriverError {
        DriverError::Record(e.0)
    }
}

impl DriverError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DriverError {
        DriverError::Io {
            path: path.into(),
            source,
        }
    }
}
