//! A TCP relay on loopback that a test can cut and restore: a unit pointed at the relay
//! instead of its peer loses sight of that peer while both keep running, as behind a broken
//! link or firewall rule. A cut closes every open connection and every new one at once (the
//! client sees an error, not a hang), so the unit notices within its own timeouts.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running relay to one target; stopped, with all its connections, when dropped.
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying connections to `target` from a free loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the relay");
        let address = listener.local_addr().expect("the relay's address");
        let (cut, watching) = watch::channel(false);
        let task = tokio::spawn(relay(listener, target, watching));
        Self { address, cut, task }
    }

    /// `http://127.0.0.1:PORT`, for a unit to use instead of the target's own URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Cuts the link: open connections are closed, new ones closed as soon as accepted.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays again (clients open new connections; closed ones stay closed).
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn relay(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else {
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                if *cut.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut cut = cut.clone();
                connections.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    // As the units' own server: no Nagle delay (a delayed ACK's ~40 ms) on
                    // what is relayed in small writes.
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
