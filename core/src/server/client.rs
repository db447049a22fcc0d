//! Who sent a request: the TCP peer, or behind a trusted reverse proxy the client the proxy
//! names in `X-Forwarded-For`.

use std::net::IpAddr;

use pingpilot_config::IpNetwork;
use poem::Request;

/// The request's client. Hops in `X-Forwarded-For` are read from the right (the proxy next to
/// the relay appends last), past every trusted proxy; the first other address is the client,
/// since only trusted proxies can have added what comes after it. A hop that is not an address
/// ends the reading at the last trusted one.
pub fn client_address(req: &Request, trusted: &[IpNetwork]) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr()?.ip().to_canonical();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    Some(forwarded_client(peer, forwarded, trusted))
}

fn forwarded_client<'a>(
    peer: IpAddr,
    forwarded: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNetwork],
) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(address));
    let mut client = peer;
    // Headers repeated are one list, in order; none is read unless the peer is trusted.
    let mut hops = forwarded.rev().flat_map(|value| value.rsplit(','));
    while is_trusted(client) {
        match hops.next().map(|hop| hop.trim().parse::<IpAddr>()) {
            Some(Ok(address)) => client = address.to_canonical(),
            Some(Err(_)) | None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted: Vec<IpNetwork> = trusted
            .iter()
            .map(|network| IpNetwork::parse(network).expect("network"))
            .collect();
        forwarded_client(ip(peer), forwarded.iter().copied(), &trusted)
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &[]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["127.0.0.1"]),
            ip("203.0.113.9"),
            "a client cannot name itself someone else"
        );
        assert_eq!(
            client("127.0.0.1", &["198.51.100.1"], &["127.0.0.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(client("127.0.0.1", &[], &["127.0.0.1"]), ip("127.0.0.1"));
    }

    #[test]
    fn hops_are_read_from_the_right_past_trusted_proxies() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        // The client wrote the first hop itself: only the hops the proxies added count.
        assert_eq!(
            client("127.0.0.1", &["6.6.6.6, 198.51.100.7, 10.0.0.2"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(
                "127.0.0.1",
                &["6.6.6.6", "198.51.100.7", "10.0.0.2"],
                &trusted
            ),
            ip("198.51.100.7"),
            "repeated headers are one list"
        );
        assert_eq!(
            client("127.0.0.1", &["10.0.0.3, 10.0.0.2"], &trusted),
            ip("10.0.0.3"),
            "every hop trusted: the first"
        );
        assert_eq!(
            client("127.0.0.1", &["198.51.100.7, bogus, 10.0.0.2"], &trusted),
            ip("10.0.0.2"),
            "a hop that is no address stops the reading"
        );
        assert_eq!(
            client("::ffff:127.0.0.1", &["2001:db8::1"], &trusted),
            ip("2001:db8::1")
        );
    }
}
