//! Creating a cluster: the founding service and its client calls (see
//! `Founding` in `proto/elastickv/v1/transport.proto`). The node decides;
//! this module only carries the questions and answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
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

/// Serves only the founding service on `incoming` until `shutdown`
/// resolves: what a node waiting for its cluster to be created answers.
pub async fn serve_alone<S, IO, E>(
    incoming: S,
    handler: Arc<dyn FoundingHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TransportError>
where
    S: Stream<Item = Result<IO, E>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tonic::transport::Server::builder()
        .add_service(service(handler))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

async fn client(addr: &str) -> Result<FoundingClient<tonic::transport::Channel>, String> {
    let endpoint = crate::peer::endpoint(addr)
        .map_err(|e| e.to_string())?
        .timeout(CALL_TIMEOUT);
    let channel = tokio::time::timeout(CALL_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| format!("no connection within {CALL_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(FoundingClient::new(channel))
}

/// Asks the node at `addr` what it knows of its cluster.
pub async fn probe(addr: &str, from_node: u64) -> Result<ProbeReply, String> {
    let mut client = client(addr).await?;
    client
        .probe(ProbeRequest { from_node })
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
    let mut client = client(addr).await?;
    let mut request = Request::new(request);
    identity.tag(&mut request);
    client
        .found(request)
        .await
        .map(Response::into_inner)
        .map_err(|s| s.message().to_string())
}
