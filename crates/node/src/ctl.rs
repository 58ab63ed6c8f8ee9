//! `elastickv ctl`: the client side of the administration service.

use std::fmt::Write as _;

use elastickv_transport::pb::{
    AddNodeRequest, ChangeReply, RemoveNodeRequest, StatusRequest, TransferLeaderRequest,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status,
    AddNode { id: u64, raft_addr: String },
    RemoveNode { id: u64 },
    TransferLeader { shard: u32, node: u64 },
}

/// Runs `action` against the node at `addr`, presenting `secret` (the
/// cluster's, if it has one) over mutual TLS with `tls` (if the cluster
/// uses it); returns what to print.
pub async fn run(
    addr: &str,
    action: Action,
    secret: Option<elastickv_transport::ClusterSecret>,
    tls: Option<std::sync::Arc<elastickv_tls::TlsContext>>,
) -> Result<String, String> {
    let identity = elastickv_transport::ClusterIdentity::default()
        .with_secret(secret)
        .with_tls(tls);
    let mut client = elastickv_transport::admin::connect(addr, &identity)
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let reply = match action {
        Action::Status => {
            let status = client
                .status(identity.request(StatusRequest {}))
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            return Ok(render_status(&status));
        }
        Action::AddNode { id, raft_addr } => {
            client
                .add_node(identity.request(AddNodeRequest {
                    node: id,
                    raft_addr,
                }))
                .await
        }
        Action::RemoveNode { id } => {
            client
                .remove_node(identity.request(RemoveNodeRequest { node: id }))
                .await
        }
        Action::TransferLeader { shard, node } => {
            client
                .transfer_leader(identity.request(TransferLeaderRequest { shard, node }))
                .await
        }
    };
    let reply: ChangeReply = reply.map_err(|s| s.message().to_string())?.into_inner();
    let mut out = String::new();
    for step in &reply.steps {
        let _ = writeln!(out, "{step}");
    }
    if reply.ok {
        out.push_str("OK\n");
        Ok(out)
    } else {
        Err(format!("{out}{}", reply.error))
    }
}

fn render_status(status: &elastickv_transport::pb::StatusReply) -> String {
    let mut out = String::new();
    let cluster = match status.cluster_id {
        0 => "none yet (waiting to be added)".to_string(),
        id => elastickv_transport::format_cluster_id(id),
    };
    let _ = writeln!(
        out,
        "node {} (answering), cluster {cluster}",
        status.node_id
    );
    let _ = writeln!(out, "members:");
    for peer in &status.peers {
        let _ = writeln!(out, "  {} {}", peer.node, peer.raft_addr);
    }
    let _ = writeln!(
        out,
        "{:<6} {:<10} {:>6} {:>6} {:>10} {:>10}  voters / learners",
        "shard", "role", "leader", "term", "commit", "applied"
    );
    for s in &status.shards {
        let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let _ = writeln!(
            out,
            "{:<6} {:<10} {:>6} {:>6} {:>10} {:>10}  {} / {}",
            s.shard,
            s.role,
            s.leader,
            s.term,
            s.commit,
            s.applied,
            list(&s.voters),
            list(&s.learners)
        );
    }
    out
}
