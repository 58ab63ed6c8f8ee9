//! Creating a cluster: the founding service and its client calls (see
//! `Founding` in `proto/elastickv/v1/transport.proto`). The node decides;
//! this module only carries the questions and answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::TransportError;
use crate::identity::ClusterIdentity;
use crate::pb::founding_client::FoundingClient;
use crate::pb::founding_server::{Founding, FoundingServer};
use crate::pb::{FoundReply, FoundRequest, ProbeReply, ProbeRequest};

/// Longest wait for a peer to answer a founding call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a node answers about founding.
#[tonic::async_trait]
pub trait FoundingHandler: Send + Sync + 'static {
    async fn probe(&self, request: ProbeRequest) -> ProbeReply;
    async fn found(&self, request: FoundRequest) -> FoundReply;
}

pub(crate) struct FoundingService {
    pub(crate) handler: Arc<dyn FoundingHandler>,
}

#[tonic::async_trait]
impl Founding for FoundingService {
    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        Ok(Response::new(
            self.handler.probe(request.into_inner()).await,
        ))
    }

    async fn found(&self, request: Request<FoundRequest>) -> Result<Response<FoundReply>, Status> {
        Ok(Response::new(
            self.handler.found(request.into_inner()).await,
        ))
    }
}

pub(crate) fn service(handler: Arc<dyn FoundingHandler>) -> FoundingServer<FoundingService> {
    FoundingServer::new(FoundingService { handler })
}

/// Serves only the founding service on the connections of `acceptor`
/// until `shutdown` resolves: what a node waiting for its cluster to be
/// created answers (to callers with the cluster secret, over TLS, as the
/// node's `identity` requires).
pub async fn serve_alone(
    acceptor: &crate::Acceptor,
    identity: &ClusterIdentity,
    handler: Arc<dyn FoundingHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    let incoming = crate::tls::serve_over(acceptor.incoming(), identity.tls().cloned());
    tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            service(handler),
            identity.interceptor(false, "founding"),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

async fn client(
    addr: &str,
    identity: &ClusterIdentity,
) -> Result<FoundingClient<tonic::transport::Channel>, String> {
    let endpoint = crate::peer::endpoint(addr)
        .map_err(|e| e.to_string())?
        .timeout(CALL_TIMEOUT);
    let channel = tokio::time::timeout(CALL_TIMEOUT, identity.connect(endpoint))
        .await
        .map_err(|_| format!("no connection within {CALL_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(FoundingClient::new(channel))
}

/// Asks the node at `addr` what it knows of its cluster.
pub async fn probe(
    addr: &str,
    identity: &ClusterIdentity,
    from_node: u64,
) -> Result<ProbeReply, String> {
    let mut client = client(addr, identity).await?;
    client
        .probe(identity.request(ProbeRequest { from_node }))
        .await
        .map(Response::into_inner)
        .map_err(|s| s.message().to_string())
}

/// Tells the node at `addr` that the cluster was created.
pub async fn found(
    addr: &str,
    identity: &ClusterIdentity,
    request: FoundRequest,
) -> Result<FoundReply, String> {
    let mut client = client(addr, identity).await?;
    client
        .found(identity.request(request))
        .await
        .map(Response::into_inner)
        .map_err(|s| s.message().to_string())
}
