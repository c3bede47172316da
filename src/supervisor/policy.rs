//! The arithmetic of restarts, kept pure so it can be tested alone.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Backoff;

/// The delay before the `attempt`-th consecutive restart, with `unit` a random number in [0, 1).
pub(super) fn backoff_delay(backoff: &Backoff, attempt: u32, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(64) as i32;
    let base = backoff.initial.as_secs_f64() * backoff.factor.max(1.0).powi(exp);
    let capped = base.min(backoff.max.as_secs_f64().max(backoff.initial.as_secs_f64()));
    let jitter = backoff.jitter.clamp(0.0, 1.0);
    let moved = capped * (1.0 + jitter * (2.0 * unit - 1.0));
    Duration::from_secs_f64(moved.max(0.0))
}

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
}
