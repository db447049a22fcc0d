//! Outgoing URLs that users enter (webhook URLs): they must not reach the relay's own network.
//!
//! A URL is checked when it is set and again on every send, after DNS resolution and against
//! every address the name resolves to, so a name that later points inward is refused too.
//! Redirects are not followed and no proxy is used, so the checked address is the one connected
//! to. `allow_private_targets` lifts the rule for relays whose receivers live on their network.

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pingpilot_config::ConfigError;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{http, outcome};
use crate::provider::DeliveryOutcome;

/// How long a check waits for DNS when a URL is set; past it the name passes, as one that does
/// not resolve does (it is checked again on every send).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// The `providers.<id>` section of a channel that sends to URLs users enter (the webhook,
/// Slack).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UrlSettings {
    /// Allow URLs on loopback, private, link-local and other inward addresses (receivers on the
    /// relay's own network). Off: such URLs are refused when set and on every send.
    pub allow_private_targets: bool,
    /// Timeout of each request, in seconds.
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
}

impl Default for UrlSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            request_timeout_secs: 10,
        }
    }
}

/// [`UrlSettings`] for `pingpilot providers`.
pub const URL_SETTINGS: &[(&str, &str)] = &[
    (
        "allow_private_targets",
        "Allow URLs on loopback, private and link-local addresses (default false)",
    ),
    (
        "request_timeout_secs",
        "HTTP timeout per request in seconds (default 10)",
    ),
];

impl UrlSettings {
    /// The targets these settings allow and a client that keeps to them; `key` names the
    /// section in errors.
    pub fn client(&self, key: &str) -> Result<(Targets, reqwest::Client), ConfigError> {
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid(format!(
                "{key}.request_timeout_secs: must be at least 1"
            )));
        }
        let targets = Targets::new(self.allow_private_targets);
        let client = targets
            .client(Duration::from_secs(self.request_timeout_secs))
            .map_err(|e| {
                ConfigError::Invalid(format!("{key}: cannot create the HTTP client: {e}"))
            })?;
        Ok((targets, client))
    }
}

/// A URL's form, for an account field's `normalize`: `http` or `https`, a host, no
/// credentials. Kept as entered, without surrounding blanks (its address is checked against the
/// settings by [`Targets::check_field`]).
pub fn normalize_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    Targets::new(true)
        .check(value)
        .map(|_| value.to_string())
        .map_err(|refused| refused.to_string())
}

/// What a request to a URL a user entered came to, for `service` (`"webhook"`, `"Slack"`): a
/// refused target fails, saying why; no answer is retried; an answer is judged by its status
/// ([`outcome::outcome`]), with `Retry-After` and the start of its body.
pub async fn outcome_of(
    service: &str,
    sent: reqwest::Result<reqwest::Response>,
) -> DeliveryOutcome {
    let response = match sent {
        Ok(response) => response,
        Err(err) => {
            if let Some(refused) = refused_in(&err) {
                return refused_outcome(service, refused);
            }
            return DeliveryOutcome::Retry {
                http_status: None,
                error: format!("{service} request failed: {}", http::error_text(err)),
                retry_after: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = http::retry_after_header(response.headers());
    let answer = http::answer_snippet(response, ANSWER_SNIPPET_CHARS).await;
    let error = if answer.is_empty() {
        format!("{service} answered {status}")
    } else {
        format!("{service} answered {status}: {answer}")
    };
    outcome::outcome(status, retry_after, error)
}

/// A URL the settings refuse will not be sent to as it is: failed, saying why.
pub fn refused_outcome(service: &str, refused: &Refused) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        http_status: None,
        error: format!("{service} URL refused: {refused}"),
    }
}

/// Longest part of an answer kept in an attempt's error.
const ANSWER_SNIPPET_CHARS: usize = 200;

/// Why a target was refused: it names or resolves to an address the relay keeps to itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether `ip` is a public unicast address: not loopback, private, link-local (which holds the
/// cloud metadata address 169.254.169.254), shared (CGNAT), unspecified, multicast, broadcast,
/// documentation or otherwise reserved. IPv4 inside IPv6 (mapped, NAT64) is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    let first = segments[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || first & 0xfe00 == 0xfc00 // unique local, fc00::/7 (AWS metadata: fd00:ec2::254)
        || first & 0xffc0 == 0xfe80 // link-local
        || first & 0xffc0 == 0xfec0 // site-local, deprecated
        || first & 0xff00 == 0xff00 // multicast
        || (first == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible, deprecated
}

/// What the relay may send to: everything public, or anything when private targets are allowed.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    allow_private: bool,
}

impl Targets {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Checks a URL's form (`http` or `https`, a host, no credentials, at most
    /// [`MAX_URL_CHARS`]) and, unless private targets are allowed, that its host is not an
    /// inward address or a `localhost` name. Names are resolved on send ([`Targets::client`]).
    pub fn check(&self, text: &str) -> Result<Url, Refused> {
        let url = parse_url(text)?;
        if self.allow_private {
            return Ok(url);
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    return Err(Refused(format!(
                        "{name} is this machine; the relay sends only to public addresses"
                    )));
                }
            }
            None => return Err(Refused("the URL has no host".into())),
        }
        Ok(url)
    }

    /// [`Targets::check`], then for a name, that every address it resolves to now is public.
    /// A name that does not resolve passes: it is checked again on every send.
    pub async fn check_resolved(&self, text: &str) -> Result<Url, Refused> {
        let url = self.check(text)?;
        if self.allow_private {
            return Ok(url);
        }
        if let Some(url::Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::net::lookup_host((name, port));
            if let Ok(Ok(addrs)) = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                for addr in addrs {
                    self.check_ip(addr.ip())
                        .map_err(|Refused(why)| Refused(format!("{name} resolves to {why}")))?;
                }
            }
        }
        Ok(url)
    }

    /// [`Targets::check_resolved`] for [`Provider::check_field`](crate::provider::Provider::check_field):
    /// the refusal is the message shown next to the field.
    pub async fn check_field(&self, value: &str) -> Result<(), String> {
        self.check_resolved(value)
            .await
            .map(|_| ())
            .map_err(|refused| refused.to_string())
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(Refused(format!(
                "{ip}, a private, loopback or reserved address; the relay sends only to public \
                 addresses"
            )))
        }
    }

    /// An HTTP client for these targets: every name it connects to is resolved and checked,
    /// redirects are answered as they are (not followed), and no proxy is used.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if self.allow_private {
            return builder.build();
        }
        builder.dns_resolver(CheckedResolver(*self)).build()
    }
}

/// Why a send failed if it was because its target was refused (by the client's resolver).
pub fn refused_in(err: &reqwest::Error) -> Option<&Refused> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

fn parse_url(text: &str) -> Result<Url, Refused> {
    let text = text.trim();
    if text.chars().count() > MAX_URL_CHARS {
        return Err(Refused(format!(
            "the URL is longer than {MAX_URL_CHARS} characters"
        )));
    }
    let url = Url::parse(text).map_err(|e| Refused(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused(
            "the URL must start with https:// or http://".into(),
        ));
    }
    if url.host().is_none() {
        return Err(Refused("the URL has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused(
            "the URL must not hold a user name or password".into(),
        ));
    }
    Ok(url)
}

/// The system resolver, refusing names with any inward address.
struct CheckedResolver(Targets);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let targets = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                targets
                    .check_ip(addr.ip())
                    .map_err(|Refused(why)| Refused(format!("{host} resolves to {why}")))?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().expect("ip"))
    }

    #[test]
    fn inward_addresses_are_not_public() {
        for inward in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(!public(inward), "{inward}");
        }
        for outward in [
            "1.1.1.1",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
        ] {
            assert!(public(outward), "{outward}");
        }
    }

    #[test]
    fn urls_are_checked_for_form_and_address() {
        let strict = Targets::new(false);
        assert!(strict.check("https://hooks.example.com/in?x=1").is_ok());
        assert!(strict.check("http://1.1.1.1:8080/").is_ok());
        for refused in [
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "http://api.localhost./",
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert!(strict.check(refused).is_err(), "{refused}");
        }
        let open = Targets::new(true);
        assert!(open.check("http://127.0.0.1:9000/").is_ok());
        assert!(open.check("ftp://example.com/").is_err());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution_on_every_send() {
        // `localhost` resolves from /etc/hosts, without a network.
        let strict = Targets::new(false)
            .client(Duration::from_secs(2))
            .expect("client");
        let err = strict
            .get("http://localhost:1/")
            .send()
            .await
            .expect_err("refused");
        let refused = refused_in(&err).expect("refused by the resolver");
        assert!(refused.0.starts_with("localhost resolves to "), "{refused}");
        let open = Targets::new(true)
            .client(Duration::from_secs(2))
            .expect("client");
        let err = open
            .get("http://localhost:1/")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        assert!(refused_in(&err).is_none());
        let refused = Targets::new(false)
            .check_resolved("http://localhost./")
            .await
            .expect_err("refused");
        assert!(refused.0.contains("is this machine"), "{refused}");
    }
}
