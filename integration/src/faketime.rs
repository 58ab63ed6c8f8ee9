//! Wall clocks that disagree: Debian's libfaketime, preloaded into one
//! elastickv process, shifts that process's wall clock by an offset read
//! from a file on every call (so a test can step it while the process
//! runs). The monotonic clock, which raft timing and leases use, stays
//! true.

use std::path::{Path, PathBuf};

/// Where Debian's `libfaketime` package puts the library.
pub const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One process's clock offset, kept in a file.
pub struct SkewedClock {
    file: PathBuf,
}

impl SkewedClock {
    /// A clock `offset_ms` (may be negative) off the real one, its offset
    /// kept in `file`. Panics with what to install if libfaketime is
    /// missing: the tests that need it must not pass without it.
    pub fn new(file: &Path, offset_ms: i64) -> SkewedClock {
        assert!(
            Path::new(LIBRARY).exists(),
            "{LIBRARY} is missing: install Debian's libfaketime package (scripts/test does)"
        );
        let clock = SkewedClock {
            file: file.to_path_buf(),
        };
        clock.set(offset_ms);
        clock
    }

    /// Steps the clock to `offset_ms` off the real one, at once.
    pub fn set(&self, offset_ms: i64) {
        let sign = if offset_ms < 0 { '-' } else { '+' };
        let abs = offset_ms.unsigned_abs();
        let text = format!("{sign}{}.{:03}\n", abs / 1000, abs % 1000);
        // Written whole and renamed, so the library never reads half a file.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write the clock offset");
        std::fs::rename(&tmp, &self.file).expect("install the clock offset");
    }

    /// The environment that makes a process follow this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), LIBRARY.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}
