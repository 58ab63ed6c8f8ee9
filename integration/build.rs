//! Builds the power-loss test's LD_PRELOAD library (powerloss/fsync_tracker.c)
//! with the system C compiler, and tells the tests where it is.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "powerloss/fsync_tracker.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let library = out.join("libfsync_tracker.so");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&library)
        .arg(source)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {compiler}: {e}"));
    assert!(status.success(), "{compiler} failed to build {source}");
    println!("cargo:rustc-env=FSYNC_TRACKER_LIB={}", library.display());
}
