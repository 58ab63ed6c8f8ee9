//! TLS between nodes (`tls_cluster`): the connections a node serves on its
//! raft address and the ones it opens to peers, as mutual TLS with the
//! node's certificate and the cluster CA ([`elastickv_tls::Usage::Cluster`]).
//!
//! gRPC runs over these connections as it does over plain TCP: HTTP/2
//! (negotiated by ALPN), the `http://` scheme in endpoints, tonic unaware
//! of TLS. That keeps the TLS configuration in one place, reloadable on
//! SIGHUP, for the server and every client alike.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use elastickv_tls::{ServedConn, ServerName, TlsContext};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_stream::Stream;
use tonic::codegen::http::Uri;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

/// Longest a connecting peer may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress on one listener at most: a flood of connections
/// that never finish theirs cannot make a node hold unbounded state.
const HANDSHAKES_IN_FLIGHT: usize = 64;

/// A connection a node serves (plain TCP, or TLS over it), as tonic
/// serves it: with its addresses for the services to see.
pub struct NodeConn(pub ServedConn);

impl Connected for NodeConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.tcp().local_addr().ok(),
            remote_addr: self.0.tcp().peer_addr().ok(),
        }
    }
}

impl AsyncRead for NodeConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NodeConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// `connections` as the services get them: with `tls`, each after its
/// handshake (failed handshakes are counted, logged at most every 10 s,
/// and dropped); without, as they come.
pub fn serve_over(
    connections: impl Stream<Item = io::Result<TcpStream>> + Send + 'static,
    tls: Option<Arc<TlsContext>>,
) -> Pin<Box<dyn Stream<Item = io::Result<NodeConn>> + Send>> {
    let Some(tls) = tls else {
        return Box::pin(connections.map(|c| c.map(|tcp| NodeConn(ServedConn::Plain(tcp)))));
    };
    let handshaken = connections
        .map(move |connection| {
            let acceptor = tls.acceptor();
            async move {
                let tcp = connection?;
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Ok(Some(NodeConn(ServedConn::Tls(Box::new(tls))))),
                    Ok(Err(e)) => {
                        refused_handshake(peer, &e.to_string());
                        Ok(None)
                    }
                    Err(_) => {
                        refused_handshake(peer, "no handshake within 10 s");
                        Ok(None)
                    }
                }
            }
        })
        .buffer_unordered(HANDSHAKES_IN_FLIGHT)
        .filter_map(|outcome: io::Result<Option<NodeConn>>| async move { outcome.transpose() });
    Box::pin(handshaken)
}

fn refused_handshake(peer: Option<std::net::SocketAddr>, why: &str) {
    metrics::counter!("elastickv_transport_tls_handshake_failures_total").increment(1);
    crate::identity::HANDSHAKE_LOG.log(|| {
        tracing::warn!(
            caller = %peer.map_or_else(|| "an unknown address".to_string(), |a| a.to_string()),
            error = why,
            "refused a connection to the raft address: its TLS handshake failed (no or an \
             untrusted client certificate?); logged at most every 10 s"
        );
    });
}

/// A channel to `endpoint` (an `http://host:port` endpoint) over TLS when
/// `tls` is set: connected now.
pub async fn connect(
    endpoint: Endpoint,
    tls: Option<&Arc<TlsContext>>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => {
            endpoint
                .connect_with_connector(TlsConnect { tls: tls.clone() })
                .await
        }
        None => endpoint.connect().await,
    }
}

/// Like [`connect`], connecting at first use.
pub fn connect_lazy(endpoint: Endpoint, tls: Option<&Arc<TlsContext>>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(TlsConnect { tls: tls.clone() }),
        None => endpoint.connect_lazy(),
    }
}

/// Opens TLS connections for tonic channels, checking the peer's
/// certificate against the host it dialled.
#[derive(Clone)]
struct TlsConnect {
    tls: Arc<TlsContext>,
}

impl tower_service::Service<Uri> for TlsConnect {
    type Response = TokioIo<elastickv_tls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.tls.connector();
        Box::pin(async move {
            let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
            let connector =
                connector.ok_or_else(|| invalid("no TLS client configuration".into()))?;
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("no host in {uri}")))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("no port in {uri}")))?;
            // An IPv6 host comes bracketed.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("{host} is not a host name: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
