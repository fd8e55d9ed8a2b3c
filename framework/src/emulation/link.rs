//! [`LinkProxy`]: a TCP relay standing for a link between two datacenters. Every byte is held
//! back for the link's one-way latency in each direction (bytes keep flowing meanwhile, as on
//! a long wire), and a cut closes every open connection and refuses new ones until restored:
//! a partition the units notice within their own timeouts, never a hang.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link does now.
#[derive(Debug, Clone, Copy)]
struct LinkState {
    cut: bool,
    latency: Duration,
}

/// A running link proxy from one listen address to one target; stopped, with every
/// connection, when dropped.
#[derive(Debug)]
pub struct LinkProxy {
    address: SocketAddr,
    state: watch::Sender<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on `listen` (port 0: any free port) and relays each connection to `target`,
    /// adding `latency` in each direction.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        latency: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let (state, watching) = watch::channel(LinkState {
            cut: false,
            latency,
        });
        let task = tokio::spawn(accept(listener, target, watching));
        Ok(Self {
            address,
            state,
            task,
        })
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://{address}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Cuts the link: open connections close, new ones are closed as soon as accepted.
    pub fn cut(&self) {
        self.state.send_modify(|state| state.cut = true);
    }

    /// Carries traffic again (clients open new connections; closed ones stay closed).
    pub fn restore(&self) {
        self.state.send_modify(|state| state.cut = false);
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        self.state.borrow().cut
    }

    /// Changes the one-way latency for bytes read from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.state.send_modify(|state| state.latency = latency);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, state: watch::Receiver<LinkState>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else {
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if state.borrow().cut {
                    drop(inbound);
                    continue;
                }
                connections.spawn(connection(inbound, target, state.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One connection through the link, until either side closes it or the link is cut.
async fn connection(inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<LinkState>) {
    // Connecting takes the link's round trip, as on a real one.
    let latency = state.borrow().latency;
    tokio::time::sleep(latency * 2).await;
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let mut pumps = tokio::task::JoinSet::new();
    pumps.spawn(direction(in_read, out_write, state.clone()));
    pumps.spawn(direction(out_read, in_write, state.clone()));
    tokio::select! {
        _ = state.wait_for(|state| state.cut) => {}
        // Both directions ended (each half-closes its peer when its reader sees the end).
        () = async { while pumps.join_next().await.is_some() {} } => {}
    }
}

/// Carries one direction: what is read now is written `latency` later, in order.
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: watch::Receiver<LinkState>,
) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, bytes)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if bytes.is_empty() {
                let _ = to.shutdown().await;
                return;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            let read = from.read(&mut buffer).await.unwrap_or(0);
            let due = Instant::now() + state.borrow().latency;
            // An empty chunk stands for the end of the stream.
            if sender.send((due, buffer[..read].to_vec())).is_err() || read == 0 {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
