//! The cluster administration service (`elastickv ctl`): the transport side.
//! What each call does is the node's business ([`AdminHandler`]); this
//! module serves it and gives clients a connection.
//!
//! Authentication: a cluster secret does not exist yet. When it does, it
//! is checked here, once for every call, from the `x-elastickv-secret`
//! metadata ([`SECRET_METADATA`]), before the handler runs.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::pb::admin_client::AdminClient;
use crate::pb::admin_server::Admin;
use crate::pb::{
    AddNodeRequest, ChangeReply, ChangeShardRequest, RemoveNodeRequest, StatusReply, StatusRequest,
    TransferLeaderRequest,
};
use crate::{MAX_MESSAGE_BYTES, TransportError};

/// Metadata key that will carry the cluster secret.
pub const SECRET_METADATA: &str = "x-elastickv-secret";

/// What the node does for each administration call.
#[tonic::async_trait]
pub trait AdminHandler: Send + Sync + 'static {
    async fn status(&self) -> StatusReply;
    async fn add_node(&self, request: AddNodeRequest) -> ChangeReply;
    async fn remove_node(&self, request: RemoveNodeRequest) -> ChangeReply;
    async fn transfer_leader(&self, request: TransferLeaderRequest) -> ChangeReply;
    async fn change_shard(&self, request: ChangeShardRequest) -> ChangeReply;
}

pub(crate) struct AdminService {
    pub(crate) handler: Arc<dyn AdminHandler>,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(self.handler.status().await))
    }

    async fn add_node(
        &self,
        request: Request<AddNodeRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        Ok(Response::new(
            self.handler.add_node(request.into_inner()).await,
        ))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        Ok(Response::new(
            self.handler.remove_node(request.into_inner()).await,
        ))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        Ok(Response::new(
            self.handler.transfer_leader(request.into_inner()).await,
        ))
    }

    async fn change_shard(
        &self,
        request: Request<ChangeShardRequest>,
    ) -> Result<Response<ChangeReply>, Status> {
        Ok(Response::new(
            self.handler.change_shard(request.into_inner()).await,
        ))
    }
}

/// A client of the administration service at `addr` (a raft address),
/// over TLS if `identity` has it.
pub async fn connect(
    addr: &str,
    identity: &crate::ClusterIdentity,
) -> Result<AdminClient<Channel>, TransportError> {
    let endpoint = crate::peer::endpoint(addr)
        .map_err(|e| TransportError::BadAddress {
            node: 0,
            addr: addr.to_string(),
            detail: e.to_string(),
        })?
        // Membership changes wait for learners to catch up.
        .timeout(Duration::from_secs(600));
    let channel = identity
        .connect(endpoint)
        .await
        .map_err(|e| TransportError::BadAddress {
            node: 0,
            addr: addr.to_string(),
            detail: e.to_string(),
        })?;
    Ok(AdminClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// One shard's step, asked of the node at `addr` (that shard's leader) by
/// another node of the cluster: the call carries this node's cluster id.
pub async fn change_shard(
    addr: &str,
    identity: &crate::ClusterIdentity,
    request: ChangeShardRequest,
) -> Result<ChangeReply, String> {
    let mut client = connect(addr, identity).await.map_err(|e| e.to_string())?;
    client
        .change_shard(identity.request(request))
        .await
        .map(Response::into_inner)
        .map_err(|status| status.message().to_string())
}
