//! Who is asking: the client's IP address, for limits per client (login's failed attempts).
//! Behind a proxy every connection comes from the proxy, so the address is taken from
//! `X-Forwarded-For` — but only when the connection comes from a proxy the unit trusts
//! (`limits.trusted_proxies`); anyone else could write any address there and so escape a
//! limit, or put somebody else under it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;

/// The client's address as the unit can best tell it, or `None` where no connection is known
/// (a request handed to the router in process, as tests do).
///
/// The proxies append the address they were connected from, so the header's last entries are
/// the most trustworthy: walking from the right, the first address that is not a trusted
/// proxy is the client. A chain of trusted proxies alone yields the leftmost entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok());
        Ok(Self(peer.map(|peer| {
            client_of(peer, forwarded, &state.inner.limits.trusted_proxies)
        })))
    }
}

/// The most hops of one request's `X-Forwarded-For` that are read; a longer
/// chain is no deployment of ours (the entries beyond are ignored, from the left).
const MAX_FORWARDED_HOPS: usize = 16;

/// The client behind `peer`, given the `X-Forwarded-For` header lines in order.
fn client_of<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|line| line.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        // Something that is no address (`unknown`, an obfuscated name, garbage) ends the
        // chain: what lies beyond it cannot be vouched for.
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Vec<ipnet::IpNet> {
        crate::config::Limits::default().trusted_proxies
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let client = client_of(ip("198.51.100.4"), ["203.0.113.9"].into_iter(), &loopback());
        assert_eq!(client, ip("198.51.100.4"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_last_in_the_chain() {
        // The client wrote a forged entry itself; the proxy appended the real address.
        let client = client_of(
            ip("127.0.0.1"),
            ["10.9.9.9, 203.0.113.9"].into_iter(),
            &loopback(),
        );
        assert_eq!(client, ip("203.0.113.9"));
        let lines = client_of(
            ip("::1"),
            ["10.9.9.9", "203.0.113.9"].into_iter(),
            &loopback(),
        );
        assert_eq!(lines, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_passed_and_garbage_ends_the_chain() {
        let trusted = vec![
            "127.0.0.0/8".parse().expect("a network"),
            "10.0.0.0/8".parse().expect("a network"),
        ];
        let client = client_of(
            ip("127.0.0.1"),
            ["203.0.113.9, 10.1.2.3"].into_iter(),
            &trusted,
        );
        assert_eq!(client, ip("203.0.113.9"));
        let garbage = client_of(
            ip("127.0.0.1"),
            ["203.0.113.9, unknown"].into_iter(),
            &trusted,
        );
        assert_eq!(garbage, ip("127.0.0.1"));
        // A trusted proxy without the header (the unit asked directly on its machine).
        assert_eq!(
            client_of(ip("127.0.0.1"), [].into_iter(), &trusted),
            ip("127.0.0.1")
        );
    }
}
