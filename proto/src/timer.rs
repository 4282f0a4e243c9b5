//! Deadlines, in the shape of quinn-proto's `TimerTable`: one slot per [`Timer`], and the
//! next deadline is the earliest slot. The connection never reads a clock; every instant
//! comes from the caller.

use std::time::Instant;

/// The timers a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The client has been silent too long (`GSMTP_TIMEOUT`): per command, per data
    /// block, and for the TLS handshake.
    Idle = 0,
    /// The whole session has lasted too long (`GSMTP_SESSION_TIMEOUT`).
    Session = 1,
}

impl Timer {
    const ALL: [Self; 2] = [Self::Idle, Self::Session];
}

/// The deadline of each [`Timer`], if armed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; 2],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    #[cfg(test)]
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// The first timer whose deadline is at or before `now`.
    pub(crate) fn expired(&self, now: Instant) -> Option<Timer> {
        Timer::ALL
            .into_iter()
            .find(|t| self.data[*t as usize].is_some_and(|at| at <= now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_wins() {
        let t0 = Instant::now(); // purity: an origin for the test
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Session, t0 + Duration::from_secs(10));
        t.set(Timer::Idle, t0 + Duration::from_secs(5));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(t.expired(t0 + Duration::from_secs(4)), None);
        assert_eq!(t.expired(t0 + Duration::from_secs(5)), Some(Timer::Idle));
        t.stop(Timer::Idle);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(11)),
            Some(Timer::Session)
        );
    }
}
