//! What an HTTP answer from a provider means for a delivery: one rule for every channel.

use std::time::Duration;

use crate::provider::DeliveryOutcome;

/// What an answer's status says to do with the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again later: the provider is busy (429) or failing (5xx), or answered with a status
    /// no API call expects (1xx, or 3xx: redirects are not followed), which a proxy or a moved
    /// endpoint may recover from. Retries stay bounded by `delivery.max_attempts` and `.max_age`.
    Retry,
    /// Will not succeed as it is: any 4xx but 429 (bad token, unknown recipient, refused, gone).
    Failed,
}

/// The verdict for an answer with `status`.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 => Verdict::Retry,
        400..=499 => Verdict::Failed,
        _ => Verdict::Retry,
    }
}

/// The outcome of an attempt answered with `status`; `retry_after` is the pause the provider
/// asked for (with a 429), and `error` says what went wrong when it did not go out.
pub fn outcome(status: u16, retry_after: Option<Duration>, error: String) -> DeliveryOutcome {
    let http_status = Some(status);
    match verdict(status) {
        Verdict::Delivered => DeliveryOutcome::Delivered { http_status },
        Verdict::Retry => DeliveryOutcome::Retry {
            http_status,
            error,
            retry_after,
        },
        Verdict::Failed => DeliveryOutcome::Failed { http_status, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_the_same_for_every_channel() {
        for (status, expected) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (101, Verdict::Retry),
            (301, Verdict::Retry),
            (400, Verdict::Failed),
            (401, Verdict::Failed),
            (403, Verdict::Failed),
            (404, Verdict::Failed),
            (408, Verdict::Failed),
            (410, Verdict::Failed),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (600, Verdict::Retry),
        ] {
            assert_eq!(verdict(status), expected, "{status}");
        }
    }

    #[test]
    fn a_pause_asked_for_travels_with_the_retry() {
        let pause = Some(Duration::from_secs(3));
        assert_eq!(
            outcome(429, pause, "slow down".into()),
            DeliveryOutcome::Retry {
                http_status: Some(429),
                error: "slow down".into(),
                retry_after: pause,
            }
        );
        assert_eq!(
            outcome(403, None, "refused".into()),
            DeliveryOutcome::Failed {
                http_status: Some(403),
                error: "refused".into(),
            }
        );
    }
}
