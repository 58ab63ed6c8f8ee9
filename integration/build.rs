//! Builds the power-loss test's LD_PRELOAD library (powerloss/fsync_tracker.c)
//! with the system C compiler, and tells the tests where it is.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let source = "powerloss/fsync_tracker.c";
    println!("cargo:rerun-if-changed={source}");
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        eprintln!("OUT_DIR is not set (not run by cargo?)");
        return ExitCode::FAILURE;
    };
    let library = out.join("libfsync_tracker.so");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&compiler)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&library)
        .arg(source)
        .arg("-ldl")
        .status();
    match built {
        Ok(status) if status.success() => {
            println!("cargo:rustc-env=FSYNC_TRACKER_LIB={}", library.display());
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("{compiler} failed to build {source}: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run the C compiler {compiler}: {e}");
            ExitCode::FAILURE
        }
    }
}
