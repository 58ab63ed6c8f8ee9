//! The raft address's listener, shared by the servers that run on it over
//! a node's life: the founding service while the node waits for its
//! cluster to be created, then the full set of services. Connections go to
//! whichever server asked last; nothing is rebound in between.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 128;

type Target = Arc<parking_lot::Mutex<Option<mpsc::Sender<std::io::Result<TcpStream>>>>>;

/// Accepts connections on one listener for a succession of servers.
#[derive(Clone)]
pub struct Acceptor {
    target: Target,
}

impl Acceptor {
    /// Starts accepting on `listener`, until `shutdown` flips (then the
    /// listener closes).
    pub fn start(listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> Acceptor {
        let target: Target = Arc::default();
        let into = target.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = shutdown.changed() => {
                        into.lock().take();
                        return;
                    }
                };
                match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let sender = into.lock().clone();
                        if let Some(sender) = sender {
                            let _ = sender.send(Ok(stream)).await;
                        }
                    }
                    Err(e) => {
                        // Out of descriptors and the like: let it pass.
                        tracing::warn!(error = %e, "cannot accept a raft connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Acceptor { target }
    }

    /// The connections accepted from now on, for a server; the previous
    /// server's stream of connections ends.
    pub fn incoming(&self) -> ReceiverStream<std::io::Result<TcpStream>> {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        *self.target.lock() = Some(sender);
        ReceiverStream::new(receiver)
    }
}
