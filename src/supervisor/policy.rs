//! What the supervisor decides after a stop, kept pure so it can be tested alone: whether a
//! policy restarts, which siblings a strategy takes along, whether the intensity limit holds.
//! (The backoff's own arithmetic is the declaration's, in `service::restart`.)

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[cfg(test)]
use crate::service::restart::{Backoff, backoff_delay};
use crate::service::restart::{RestartPolicy, Strategy};

/// Records a restart at `now` and says whether the intensity limit still holds.
///
/// Restarts older than `within` fall out of the window first.
pub(super) fn admit_restart(
    history: &mut VecDeque<Instant>,
    now: Instant,
    max_restarts: u32,
    within: Duration,
) -> bool {
    while history
        .front()
        .is_some_and(|t| now.duration_since(*t) > within)
    {
        history.pop_front();
    }
    if history.len() >= max_restarts as usize {
        return false;
    }
    history.push_back(now);
    true
}

/// Whether a service stopped under `policy` comes back; `failed` says whether it failed or
/// stopped normally.
pub(super) fn restarts(policy: RestartPolicy, failed: bool) -> bool {
    match policy {
        RestartPolicy::Permanent => true,
        RestartPolicy::Transient => failed,
        RestartPolicy::Temporary => false,
    }
}

/// The slots, in start order, that restart together when the one at `idx` of `len` fails.
pub(super) fn group(strategy: Strategy, idx: usize, len: usize) -> std::ops::Range<usize> {
    match strategy {
        Strategy::OneForOne => idx..idx + 1,
        Strategy::OneForAll => 0..len,
        Strategy::RestForOne => idx..len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
            ..Backoff::default()
        };
        let d: Vec<_> = (1..=6)
            .map(|n| backoff_delay(&b, n, 0.5).as_millis())
            .collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff {
            jitter: 0.2,
            ..Backoff::default()
        };
        let low = backoff_delay(&b, 1, 0.0).as_secs_f64();
        let high = backoff_delay(&b, 1, 0.999_999).as_secs_f64();
        assert!((low - 0.08).abs() < 1e-6, "{low}");
        assert!((high - 0.12).abs() < 1e-6, "{high}");
    }

    #[test]
    fn intensity_window_slides() {
        let t0 = Instant::now();
        let mut h = VecDeque::new();
        let w = Duration::from_secs(10);
        assert!(admit_restart(&mut h, t0, 2, w));
        assert!(admit_restart(&mut h, t0 + Duration::from_secs(1), 2, w));
        assert!(!admit_restart(&mut h, t0 + Duration::from_secs(2), 2, w));
        assert!(admit_restart(&mut h, t0 + Duration::from_secs(12), 2, w));
    }

    #[test]
    fn the_policy_says_what_comes_back() {
        use RestartPolicy::*;
        let table = [
            (Permanent, true, true),
            (Permanent, false, true),
            (Transient, true, true),
        ];
        for (policy, failed, back) in table {
            assert_eq!(restarts(policy, failed), back, "{policy:?} failed={failed}");
        }
        assert!(!restarts(Transient, false));
        assert!(!restarts(Temporary, true));
        assert!(!restarts(Temporary, false));
    }

    #[test]
    fn the_strategy_says_who_restarts_together() {
        assert_eq!(group(Strategy::OneForOne, 2, 5), 2..3);
        assert_eq!(group(Strategy::OneForAll, 2, 5), 0..5);
        assert_eq!(group(Strategy::RestForOne, 2, 5), 2..5);
    }
}
