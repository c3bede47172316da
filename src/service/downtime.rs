//! Where a periodic service's schedule stood when its process stopped, and what its missed-tick
//! policy makes of the ticks that fell while nothing ran.

use std::time::{Duration, SystemTime};

use super::definition::{MissedTick, Schedule};

/// Where a periodic service's schedule stood: kept in the store with its run history, so that
/// the next process knows which ticks fell while it was down.
///
/// Each time is by the runtime's clock (the wall clock, moved on by tokio's on paused time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ScheduleMark {
    /// When the schedule's last tick came (it ran, or it was skipped): the phase the next
    /// ticks keep.
    pub tick: Option<SystemTime>,
    /// When the last run (scheduled or triggered) started.
    pub started: Option<SystemTime>,
    /// When the last run ended.
    pub ended: Option<SystemTime>,
}

impl ScheduleMark {
    /// A mark of these times.
    pub fn new(
        tick: Option<SystemTime>,
        started: Option<SystemTime>,
        ended: Option<SystemTime>,
    ) -> Self {
        ScheduleMark {
            tick,
            started,
            ended,
        }
    }

    /// Whether the last run started and never ended: its process stopped under it.
    pub(crate) fn cut_short(&self) -> bool {
        match (self.started, self.ended) {
            (Some(started), Some(ended)) => started > ended,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// How a schedule goes on after a downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resumed {
    /// How long until the first tick.
    pub(crate) first: Duration,
    /// The ticks that fell while nothing ran, up to now.
    pub(crate) missed: u64,
    /// Whether to run once at once, for them (`MissedTick::RunOnce`, or a run cut short).
    pub(crate) run_now: bool,
}

impl Schedule {
    /// How the schedule goes on at `now` from `mark`, left by the last process: the next tick
    /// keeps the old phase, and the ticks that fell between are skipped (`Skip`), run once
    /// (`RunOnce`), or, for a fixed delay (`Delay`), the next run comes a period after the last
    /// one ended, at once if that has passed. A run that its process stopped under runs again
    /// at once, unless the policy is to skip. `None` when the mark says nothing to go on from:
    /// the schedule starts as it would the first time.
    pub(crate) fn resume(&self, mark: &ScheduleMark, now: SystemTime) -> Option<Resumed> {
        let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        let cut = mark.cut_short() && self.missed != MissedTick::Skip;
        if self.missed == MissedTick::Delay {
            let ended = mark.ended?;
            let first = if cut {
                Duration::ZERO
            } else {
                self.period.saturating_sub(since(ended))
            };
            let missed = u64::from(since(ended) > self.period);
            return Some(Resumed {
                first,
                missed,
                run_now: false,
            });
        }
        let elapsed = since(mark.tick?);
        let period = self.period.as_nanos();
        let (whole, part) = (elapsed.as_nanos() / period, elapsed.as_nanos() % period);
        // Ticks at tick + k·period for k ≥ 1: those before now are missed, and the next is
        // due at the next multiple (now itself, when it falls exactly on one).
        let missed = if part == 0 {
            whole.saturating_sub(1)
        } else {
            whole
        };
        let first = if part == 0 && whole > 0 {
            Duration::ZERO
        } else {
            nanos(period - part)
        };
        let missed = u64::try_from(missed).unwrap_or(u64::MAX);
        Some(Resumed {
            first,
            missed,
            run_now: cut || (self.missed == MissedTick::RunOnce && missed > 0),
        })
    }
}

fn nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    // Below a billion: it fits.
    Duration::new(secs, (n % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn every(missed: MissedTick) -> Schedule {
        Schedule::every(10 * MIN).missed_ticks(missed)
    }

    fn ticked(tick: u64, ended: u64) -> ScheduleMark {
        ScheduleMark::new(Some(at(tick)), Some(at(tick)), Some(at(ended)))
    }

    #[test]
    fn a_short_downtime_keeps_the_phase_and_misses_nothing() {
        for policy in [MissedTick::Skip, MissedTick::RunOnce] {
            // Last tick at 0, back at 4 min: the next tick is at 10 min, in 6.
            let resumed = every(policy).resume(&ticked(0, 30), at(240)).unwrap();
            assert_eq!(
                resumed,
                Resumed {
                    first: 6 * MIN,
                    missed: 0,
                    run_now: false
                },
                "{policy:?}"
            );
        }
    }

    #[test]
    fn ticks_that_fell_in_the_downtime_are_skipped_or_run_once() {
        // Last tick at 0, back at 35 min: ticks at 10, 20 and 30 min fell; the next is at 40.
        let skip = every(MissedTick::Skip)
            .resume(&ticked(0, 30), at(35 * 60))
            .unwrap();
        assert_eq!((skip.first, skip.missed, skip.run_now), (5 * MIN, 3, false));
        let once = every(MissedTick::RunOnce)
            .resume(&ticked(0, 30), at(35 * 60))
            .unwrap();
        assert_eq!((once.first, once.missed, once.run_now), (5 * MIN, 3, true));
        // Back exactly on a tick: it is due now, and the ones before it were missed.
        let on = every(MissedTick::RunOnce)
            .resume(&ticked(0, 30), at(20 * 60))
            .unwrap();
        assert_eq!((on.first, on.missed), (Duration::ZERO, 1));
    }

    #[test]
    fn a_fixed_delay_counts_from_the_last_end() {
        let delay = every(MissedTick::Delay);
        // Ended at 1 min, back at 4: the next run is 10 min after the end, in 7.
        let soon = delay.resume(&ticked(0, 60), at(240)).unwrap();
        assert_eq!((soon.first, soon.missed, soon.run_now), (7 * MIN, 0, false));
        // Back long after: at once.
        let late = delay.resume(&ticked(0, 60), at(3600)).unwrap();
        assert_eq!((late.first, late.missed), (Duration::ZERO, 1));
        // No run ever ended: nothing to go on from.
        let none = ScheduleMark::new(Some(at(0)), None, None);
        assert_eq!(every(MissedTick::Delay).resume(&none, at(60)), None);
    }

    #[test]
    fn a_run_its_process_stopped_under_runs_again_unless_skipped() {
        // Started at 0, never ended; back at 4 min.
        let cut = ScheduleMark::new(Some(at(0)), Some(at(0)), None);
        let once = every(MissedTick::RunOnce).resume(&cut, at(240)).unwrap();
        assert!(once.run_now);
        assert_eq!(once.first, 6 * MIN, "the phase is kept");
        let delay = every(MissedTick::Delay).resume(
            &ScheduleMark::new(Some(at(600)), Some(at(600)), Some(at(60))),
            at(700),
        );
        assert_eq!(delay.unwrap().first, Duration::ZERO);
        let skip = every(MissedTick::Skip).resume(&cut, at(240)).unwrap();
        assert!(!skip.run_now);
        // A skipped tick (paused) moves the phase, and is no cut-short run.
        let paused = ScheduleMark::new(Some(at(600)), Some(at(0)), Some(at(30)));
        assert!(!paused.cut_short());
        let resumed = every(MissedTick::RunOnce).resume(&paused, at(900)).unwrap();
        assert_eq!((resumed.first, resumed.run_now), (5 * MIN, false));
    }

    #[test]
    fn a_clock_that_went_back_misses_nothing_and_a_mark_without_a_tick_starts_afresh() {
        let resumed = every(MissedTick::RunOnce)
            .resume(&ticked(600, 630), at(0))
            .unwrap();
        assert_eq!((resumed.first, resumed.missed), (10 * MIN, 0));
        let triggered_only = ScheduleMark::new(None, Some(at(0)), Some(at(10)));
        assert_eq!(
            every(MissedTick::Skip).resume(&triggered_only, at(60)),
            None
        );
    }
}
