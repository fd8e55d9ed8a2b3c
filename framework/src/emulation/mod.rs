//! Emulated datacenters on one Linux machine, for tests and `hiscale dc-demo`: each datacenter
//! is a network namespace of its own ([`Network`]), so its units are a separate host with their
//! own address, and every link between datacenters passes a [`LinkProxy`] that adds latency
//! and can be cut and restored (the kernels we run on have no `netem`); [`LineTopology`] writes
//! the topology of a line of them.
//!
//! Only addresses inside the namespaces made here (`10.231.k.0/24`) or loopback are used.
//! Creating namespaces needs root. Feature `emulation`.

mod line;
mod link;
mod netns;

pub use line::{LineTopology, LineUnit};
pub use link::LinkProxy;
pub use netns::{EmulationError, Network, Site};
