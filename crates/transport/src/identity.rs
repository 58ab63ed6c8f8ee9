//! Which cluster a node belongs to, on the wire.
//!
//! A cluster gets a random id when it is created; every node records it
//! and sends it with every node-to-node call (the `x-elastickv-cluster`
//! metadata). A node refuses calls from another cluster, and node-to-node
//! calls that do not say (the administration service, which `elastickv
//! ctl` calls, does not require it). A node waiting to be added has no id
//! yet: it adopts (and records) the id of the first node-to-node call it
//! gets, which comes from the cluster that added it. That alone lets
//! nothing in: its raft replicas stay empty until a snapshot makes them
//! learners.
//!
//! With a cluster secret (see [`crate::secret`]), every call to every
//! service must also present its token, checked before anything else: a
//! node waiting to be added adopts a cluster id only from a caller that
//! knows the secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::secret::{AUTH_HEADER, ClusterSecret};

/// The metadata key carrying the caller's cluster id.
pub const CLUSTER_HEADER: &str = "x-elastickv-cluster";

/// A cluster id as operators see it: 16 hex digits.
pub fn format_cluster_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Persists an adopted cluster id before it is used.
pub type RecordId = Arc<dyn Fn(u64) -> Result<(), String> + Send + Sync>;

/// This node's cluster id, shared by everything that calls or serves
/// other nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct ClusterIdentity {
    /// 0 until known.
    id: Arc<AtomicU64>,
    /// Set on a node waiting to be added: how to record the id it adopts.
    record: Option<RecordId>,
    /// What callers must present, and what this node presents.
    secret: Option<Arc<ClusterSecret>>,
    /// Mutual TLS with the cluster CA, for every connection to or from
    /// another node (see [`crate::tls`]).
    tls: Option<Arc<elastickv_tls::TlsContext>>,
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIdentity")
            .field("id", &self.get().map(format_cluster_id))
            .field("secret", &self.secret.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ClusterIdentity {
    pub fn new(id: Option<u64>) -> ClusterIdentity {
        ClusterIdentity {
            id: Arc::new(AtomicU64::new(id.unwrap_or(0))),
            record: None,
            secret: None,
            tls: None,
        }
    }

    /// An identity not known yet, that adopts the id of the first
    /// node-to-node call it admits, recorded with `record` first.
    pub fn adopting(record: RecordId) -> ClusterIdentity {
        ClusterIdentity {
            id: Arc::default(),
            record: Some(record),
            secret: None,
            tls: None,
        }
    }

    /// This identity, presenting and requiring `secret` (none: calls are
    /// not authenticated).
    pub fn with_secret(mut self, secret: Option<ClusterSecret>) -> ClusterIdentity {
        self.secret = secret.map(Arc::new);
        self
    }

    /// This identity, connecting to and serving other nodes over mutual
    /// TLS with `tls` (a [`elastickv_tls::Usage::Cluster`] context).
    pub fn with_tls(mut self, tls: Option<Arc<elastickv_tls::TlsContext>>) -> ClusterIdentity {
        self.tls = tls;
        self
    }

    pub fn tls(&self) -> Option<&Arc<elastickv_tls::TlsContext>> {
        self.tls.as_ref()
    }

    /// A channel to the node behind `endpoint`, over TLS if this identity
    /// has it: connected now.
    pub async fn connect(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        crate::tls::connect(endpoint, self.tls.as_ref()).await
    }

    /// Like [`ClusterIdentity::connect`], connecting at first use.
    pub fn connect_lazy(&self, endpoint: tonic::transport::Endpoint) -> tonic::transport::Channel {
        crate::tls::connect_lazy(endpoint, self.tls.as_ref())
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.id.load(Ordering::SeqCst)).filter(|&id| id != 0)
    }

    /// Records the id once known; an id already set is kept. Returns the
    /// id in force.
    pub fn adopt(&self, id: u64) -> u64 {
        match self
            .id
            .compare_exchange(0, id, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => id,
            Err(current) => current,
        }
    }

    /// Marks an outgoing request with this node's cluster id (if known)
    /// and the cluster secret's token (if any).
    pub fn tag<T>(&self, request: &mut Request<T>) {
        if let Some(secret) = &self.secret
            && let Ok(value) = MetadataValue::try_from(secret.token())
        {
            request.metadata_mut().insert(AUTH_HEADER, value);
        }
        if let Some(id) = self.get()
            && let Ok(value) = MetadataValue::try_from(format_cluster_id(id))
        {
            request.metadata_mut().insert(CLUSTER_HEADER, value);
        }
    }

    /// `message` as a request [tagged](ClusterIdentity::tag) by this
    /// identity.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        self.tag(&mut request);
        request
    }

    /// The caller's cluster id, if it said.
    pub fn of_caller<T>(request: &Request<T>) -> Result<Option<u64>, Status> {
        let Some(value) = request.metadata().get(CLUSTER_HEADER) else {
            return Ok(None);
        };
        value
            .to_str()
            .ok()
            .and_then(|text| u64::from_str_radix(text, 16).ok())
            .filter(|&id| id != 0)
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("malformed {CLUSTER_HEADER}")))
    }

    /// Whether the caller presented the cluster secret's token (always
    /// true when this node has no secret).
    pub fn authenticate<T>(&self, request: &Request<T>, service: &str) -> Result<(), Status> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let presented = request.metadata().get(AUTH_HEADER);
        if presented.is_some_and(|token| secret.accepts(token.as_bytes())) {
            return Ok(());
        }
        metrics::counter!(
            "elastickv_transport_unauthenticated_calls_total",
            "service" => service.to_string()
        )
        .increment(1);
        let caller = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        let why = if presented.is_some() {
            "a wrong cluster secret"
        } else {
            "no cluster secret"
        };
        UNAUTHENTICATED_LOG.log(|| {
            tracing::warn!(
                service,
                caller = %caller,
                "refused a call with {why} (a node or `elastickv ctl` started without \
                 --cluster-secret-file, or with another cluster's); logged at most every \
                 {REFUSAL_LOG_EVERY_MS} ms"
            );
        });
        Err(Status::unauthenticated(format!(
            "this node requires the cluster secret; the call carried {why}"
        )))
    }

    /// Whether a call may be served: it presents the cluster secret (if
    /// this node has one), and comes from this node's cluster, or from a
    /// caller that does not say when `required` is false. A node with no
    /// id yet accepts every authenticated call.
    pub fn admit<T>(
        &self,
        request: &Request<T>,
        required: bool,
        service: &str,
    ) -> Result<(), Status> {
        self.authenticate(request, service)?;
        self.admit_cluster(request, required)
    }

    fn admit_cluster<T>(&self, request: &Request<T>, required: bool) -> Result<(), Status> {
        let caller = Self::of_caller(request)?;
        let Some(mine) = self.get() else {
            if let (Some(theirs), Some(record), true) = (caller, &self.record, required) {
                record(theirs)
                    .map_err(|e| Status::internal(format!("cannot record the cluster id: {e}")))?;
                let adopted = self.adopt(theirs);
                tracing::info!(
                    cluster_id = %format_cluster_id(adopted),
                    "this node now belongs to the cluster that added it"
                );
                if adopted != theirs {
                    return self.admit_cluster(request, required);
                }
            }
            return Ok(());
        };
        match caller {
            Some(theirs) if theirs == mine => Ok(()),
            Some(theirs) => {
                metrics::counter!("elastickv_transport_foreign_cluster_calls_total").increment(1);
                log_refusal(mine, theirs);
                Err(Status::failed_precondition(format!(
                    "this node belongs to cluster {}, the caller to cluster {}",
                    format_cluster_id(mine),
                    format_cluster_id(theirs)
                )))
            }
            None if required => Err(Status::failed_precondition(format!(
                "the caller did not say which cluster it belongs to ({CLUSTER_HEADER}); \
                 this node belongs to cluster {}",
                format_cluster_id(mine)
            ))),
            None => Ok(()),
        }
    }

    /// A tonic interceptor admitting calls to `service` as
    /// [`ClusterIdentity::admit`].
    pub fn interceptor(
        &self,
        required: bool,
        service: &'static str,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let identity = self.clone();
        move |request: Request<()>| {
            identity.admit(&request, required, service)?;
            Ok(request)
        }
    }
}

/// Refused calls are logged at most this often (per kind of refusal).
const REFUSAL_LOG_EVERY_MS: u64 = 10_000;

/// A log line that is written at most every [`REFUSAL_LOG_EVERY_MS`]: a
/// misconfigured or hostile caller retrying in a loop must not flood the
/// log.
pub(crate) struct RateLimitedLog {
    last_ms: AtomicU64,
}

/// Failed TLS handshakes on the raft address.
pub(crate) static HANDSHAKE_LOG: RateLimitedLog = RateLimitedLog {
    last_ms: AtomicU64::new(0),
};

static FOREIGN_LOG: RateLimitedLog = RateLimitedLog {
    last_ms: AtomicU64::new(0),
};
static UNAUTHENTICATED_LOG: RateLimitedLog = RateLimitedLog {
    last_ms: AtomicU64::new(0),
};

impl RateLimitedLog {
    pub(crate) fn log(&self, write: impl FnOnce()) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFUSAL_LOG_EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            write();
        }
    }
}

fn log_refusal(mine: u64, theirs: u64) {
    FOREIGN_LOG.log(|| {
        tracing::warn!(
            cluster_id = %format_cluster_id(mine),
            caller_cluster_id = %format_cluster_id(theirs),
            "refused a call from another cluster (a peer address points at the wrong node?); \
             logged at most every {REFUSAL_LOG_EVERY_MS} ms"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_admitted_only_from_the_same_cluster() {
        let mine = ClusterIdentity::new(Some(0xabc));
        let theirs = ClusterIdentity::new(Some(0xdef));
        let unknown = ClusterIdentity::default();
        let call = |from: &ClusterIdentity| {
            let mut request = Request::new(());
            from.tag(&mut request);
            request
        };
        assert!(mine.admit(&call(&mine), true, "test").is_ok());
        let refused = mine.admit(&call(&theirs), true, "test").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("0000000000000def"), "{refused}");
        assert!(mine.admit(&call(&unknown), true, "test").is_err());
        assert!(mine.admit(&call(&unknown), false, "test").is_ok());
        // A node with no id yet accepts anyone, and adopts an id once.
        assert!(unknown.admit(&call(&theirs), true, "test").is_ok());
        assert_eq!(unknown.adopt(0xdef), 0xdef);
        assert_eq!(unknown.adopt(0x123), 0xdef);
        // One waiting to be added records and adopts its first caller's.
        let recorded = Arc::new(AtomicU64::new(0));
        let joining = ClusterIdentity::adopting({
            let recorded = recorded.clone();
            Arc::new(move |id| {
                recorded.store(id, Ordering::SeqCst);
                Ok(())
            })
        });
        assert!(
            joining
                .admit(&call(&ClusterIdentity::default()), true, "test")
                .is_ok()
        );
        assert_eq!(joining.get(), None);
        assert!(joining.admit(&call(&theirs), false, "test").is_ok());
        assert_eq!(joining.get(), None, "only node-to-node calls count");
        assert!(joining.admit(&call(&theirs), true, "test").is_ok());
        assert_eq!(
            (joining.get(), recorded.load(Ordering::SeqCst)),
            (Some(0xdef), 0xdef)
        );
        assert!(joining.admit(&call(&mine), true, "test").is_err());
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert(CLUSTER_HEADER, MetadataValue::from_static("zz"));
        assert!(mine.admit(&bad, false, "test").is_err());
    }

    #[test]
    fn with_a_secret_every_call_must_present_it() {
        let secret = || Some(ClusterSecret::new(b"a cluster secret of ours").unwrap());
        let mine = ClusterIdentity::new(Some(0xabc)).with_secret(secret());
        let sibling = ClusterIdentity::new(Some(0xabc)).with_secret(secret());
        let keyless = ClusterIdentity::new(Some(0xabc));
        let wrong = ClusterIdentity::new(Some(0xabc)).with_secret(Some(
            ClusterSecret::new(b"another cluster's secret").unwrap(),
        ));
        let ctl = ClusterIdentity::default().with_secret(secret());
        let call = |from: &ClusterIdentity| {
            let mut request = Request::new(());
            from.tag(&mut request);
            request
        };
        assert!(mine.admit(&call(&sibling), true, "raft").is_ok());
        assert!(mine.admit(&call(&ctl), false, "admin").is_ok());
        for (caller, required) in [(&keyless, true), (&keyless, false), (&wrong, false)] {
            let refused = mine.admit(&call(caller), required, "admin").unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        }
        // A node without a secret does not check (nor is it checked by
        // tokens it does not send).
        assert!(keyless.admit(&call(&mine), true, "raft").is_ok());
        // A node waiting to be added adopts no id from an unauthenticated
        // caller.
        let joining = ClusterIdentity::adopting(Arc::new(|_| Ok(()))).with_secret(secret());
        let stranger = ClusterIdentity::new(Some(0xdef));
        assert!(joining.admit(&call(&stranger), true, "raft").is_err());
        assert_eq!(joining.get(), None);
        assert!(joining.admit(&call(&mine), true, "raft").is_ok());
        assert_eq!(joining.get(), Some(0xabc));
    }
}
