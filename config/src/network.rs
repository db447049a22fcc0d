//! An IP network in a setting: `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`).

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not an IP address or a network like 10.0.0.0/8");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let bits = Self::bits(address);
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(invalid)?,
            None => bits,
        };
        Ok(Self { address, prefix })
    }

    /// Whether `address` is in this network. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`,
    /// as a listener on `[::]` sees IPv4 clients) counts as the IPv4 address.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                same_prefix(&net.octets(), &addr.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                same_prefix(&net.octets(), &addr.octets(), self.prefix)
            }
            _ => false,
        }
    }

    fn bits(address: IpAddr) -> u8 {
        match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are the same.
fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xFFu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == Self::bits(self.address) {
            write!(f, "{}", self.address)
        } else {
            write!(f, "{}/{}", self.address, self.prefix)
        }
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for IpNetwork {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IpNetwork".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IP address (127.0.0.1, ::1) or a network (10.0.0.0/8, fd00::/8)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn networks_hold_their_addresses() {
        let private = IpNetwork::parse("10.0.0.0/8").expect("network");
        assert!(private.contains(ip("10.1.2.3")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(private.contains(ip("::ffff:10.0.0.9")), "IPv4 seen on [::]");
        let odd = IpNetwork::parse("192.168.0.0/23").expect("network");
        assert!(odd.contains(ip("192.168.1.255")));
        assert!(!odd.contains(ip("192.168.2.0")));
        let one = IpNetwork::parse("127.0.0.1").expect("address");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = IpNetwork::parse("fd00::/8").expect("network");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(
            IpNetwork::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
    }

    #[test]
    fn bad_networks_are_refused_and_good_ones_written_back() {
        for bad in ["", "10.0.0", "10.0.0.0/33", "::1/129", "10.0.0.0/x", "host"] {
            assert!(IpNetwork::parse(bad).is_err(), "{bad}");
        }
        for good in ["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"] {
            assert_eq!(IpNetwork::parse(good).expect(good).to_string(), good);
        }
    }
}
