//! Builds the eBPF programs from source (../ebpf) with the nightly toolchain and
//! bpf-linker (`scripts/setup` installs both), so the driver always embeds programs that
//! match this checkout's rill-abi. `RILL_EBPF_OBJECT` may name a prebuilt object instead.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("rill-ebpf.o");
    println!("cargo:rerun-if-env-changed=RILL_EBPF_OBJECT");
    if let Some(prebuilt) = env::var_os("RILL_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &dest).expect("copy RILL_EBPF_OBJECT");
        return;
    }
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let ebpf = root.join("../ebpf");
    for dir in ["src", "../abi/src"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(dir).display());
    }
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", ebpf.join(f).display());
    }
    let target_dir = out.join("ebpf-target");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ebpf)
        .args(["+nightly", "build", "--release", "--locked", "--target-dir"])
        .arg(&target_dir);
    // The host build's flags and wrappers must not leak into the BPF build.
    for (k, _) in env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_") && k != "CARGO_HOME"
            || k.starts_with("RUST") && k != "RUSTUP_HOME"
        {
            cmd.env_remove(&k);
        }
    }
    let status = cmd
        .status()
        .expect("run cargo +nightly to build the eBPF programs");
    if !status.success() {
        panic!(
            "building the eBPF programs failed; run ./scripts/setup to install the nightly \
             rust-src component and bpf-linker"
        );
    }
    let obj = target_dir.join("bpfel-unknown-none/release/rill-ebpf");
    std::fs::copy(&obj, &dest).expect("copy the eBPF object");
}
