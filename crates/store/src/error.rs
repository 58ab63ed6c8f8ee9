//! Storage errors.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("corrupt {what} record for shard {shard}: {detail}")]
    Corrupt {
        what: &'static str,
        shard: u32,
        detail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    #[error(
        "data directory was created with {recorded} shards but {requested} were requested; \
         changing the shard count of existing data is not supported"
    )]
    ShardCountMismatch { recorded: u32, requested: u32 },
    #[error("data directory belongs to node {recorded} but this node is {requested}")]
    NodeIdMismatch { recorded: u64, requested: u64 },
    #[error(
        "data directory format {found} is not supported (this build reads format {supported}); \
         start this build on an empty data directory and let it catch up from the cluster"
    )]
    UnsupportedFormat { found: u64, supported: u64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;
