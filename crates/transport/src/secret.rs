//! The cluster secret: what every node-to-node call and every `elastickv
//! ctl` call presents, so that reaching a node's raft address is not enough
//! to step its raft groups, read its snapshots or change its membership.
//!
//! Callers send a token derived from the secret (SHA-256 of a fixed label
//! and the secret, in the `x-elastickv-auth` metadata), never the secret
//! itself; a node compares the token in constant time. Without TLS the
//! token travels in the clear and could be replayed by whoever can read
//! the traffic: the secret keeps out callers, TLS between nodes
//! (`tls_cluster`) keeps out eavesdroppers and impostors.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The metadata key carrying the caller's token.
pub const AUTH_HEADER: &str = "x-elastickv-auth";

/// A secret shorter than this is refused: it could be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a cluster secret could not be used.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the cluster secret{from} is {len} bytes; at least {MIN_SECRET_BYTES} are required \
         (for example: openssl rand -hex 32)"
    )]
    TooShort { from: String, len: usize },
}

/// A cluster secret, kept only as the token derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret {
    token: String,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// A secret from its bytes; surrounding whitespace (a file's final
    /// newline) is not part of it.
    pub fn new(secret: &[u8]) -> Result<ClusterSecret, SecretError> {
        Self::checked(secret, String::new())
    }

    /// The secret held in `path`.
    pub fn from_file(path: &Path) -> Result<ClusterSecret, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::checked(&bytes, format!(" in {}", path.display()))
    }

    fn checked(secret: &[u8], from: String) -> Result<ClusterSecret, SecretError> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                from,
                len: secret.len(),
            });
        }
        let mut hasher = Sha256::new();
        hasher.update(b"elastickv cluster secret v1\0");
        hasher.update(secret);
        let token = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(ClusterSecret { token })
    }

    /// What a caller presents.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether `presented` is this secret's token (constant time in the
    /// token's contents).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        presented.len() == self.token.len() && bool::from(presented.ct_eq(self.token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_for_the_same_secret() {
        let secret = ClusterSecret::new(b"0123456789abcdef\n").unwrap();
        let same = ClusterSecret::new(b"  0123456789abcdef").unwrap();
        let other = ClusterSecret::new(b"0123456789abcdeg").unwrap();
        assert_eq!(secret, same);
        assert!(secret.accepts(same.token().as_bytes()));
        assert!(!secret.accepts(other.token().as_bytes()));
        assert!(!secret.accepts(b""));
        assert!(!secret.accepts(b"0123456789abcdef"));
        assert_eq!(secret.token().len(), 64);
        assert!(!secret.token().contains("0123456789abcdef"));
    }

    #[test]
    fn short_or_unreadable_secrets_are_refused() {
        let short = ClusterSecret::new(b"short\n").unwrap_err();
        assert!(short.to_string().contains("5 bytes"), "{short}");
        let missing = ClusterSecret::from_file(Path::new("/nonexistent/secret")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/secret"),
            "{missing}"
        );
    }
}
