//! Waiting with a bound: signals, deadlines, and [`with_timeout`], the one way the server
//! gives up on something slow (a client, a destination, a handshake).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use event_listener::{Event, EventListener};
use futures_lite::future;

/// The deadline passed before the work was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl From<Elapsed> for io::Error {
    fn from(_: Elapsed) -> Self {
        io::ErrorKind::TimedOut.into()
    }
}

/// `fut`'s output, or [`Elapsed`] once `deadline` has passed. The deadline is asked
/// first, each time both could go on, so nothing is started once it has passed.
pub(crate) async fn with_timeout<F: Future>(
    deadline: Instant,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let timer = async {
        async_io::Timer::at(deadline).await;
        Err(Elapsed)
    };
    future::or(timer, async { Ok(fut.await) }).await
}

/// A level-triggered signal: once fired, every wait on it returns at once.
#[derive(Clone, Debug)]
pub(crate) struct Signal(Arc<SignalState>);

#[derive(Debug, Default)]
struct SignalState {
    fired: AtomicBool,
    event: Event,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self(Arc::default())
    }

    /// A signal that never fires, shared by all sessions.
    pub(crate) fn never() -> Self {
        static NEVER: std::sync::OnceLock<Signal> = std::sync::OnceLock::new();
        NEVER.get_or_init(Self::new).clone()
    }

    /// Fires the signal: every wait, now and later, returns.
    pub(crate) fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }

    /// Whether the signal has fired.
    pub(crate) fn fired(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// Ready once the signal has fired. The wait's registration is kept in `listener`
    /// between polls (and may be kept from one wait to the next): a caller that polls by
    /// hand needs no future of its own.
    pub(crate) fn poll_wait(
        &self,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            if self.fired() {
                return Poll::Ready(());
            }
            match listener {
                // Checked again once listening: a fire in between is not missed.
                None => *listener = Some(self.0.event.listen()),
                Some(l) => {
                    std::task::ready!(Pin::new(l).poll(cx));
                    *listener = None;
                }
            }
        }
    }

    /// Resolves once the signal has fired.
    pub(crate) async fn wait(&self) {
        let mut listener = None;
        future::poll_fn(|cx| self.poll_wait(&mut listener, cx)).await;
    }
}

/// What interrupted a wait.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// The deadline passed.
    Deadline,
    /// The server is closing the remaining sessions.
    Stop,
}

/// Runs `fut` until it completes, `deadline` passes, or `stop` fires, asked in that
/// order. A plain function, not an `async fn`, so `fut` is moved once into the result
/// instead of being kept twice (as an argument and as the awaited value).
pub(crate) fn bounded<'a, T: 'a>(
    deadline: Option<Instant>,
    stop: &'a Signal,
    fut: impl Future<Output = io::Result<T>> + 'a,
) -> impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a {
    let timer = async move {
        match deadline {
            Some(at) => drop(async_io::Timer::at(at).await),
            None => future::pending::<()>().await,
        }
        Ok(Err(Interrupt::Deadline))
    };
    let stopped = async move {
        stop.wait().await;
        Ok(Err(Interrupt::Stop))
    };
    future::or(async move { fut.await.map(Ok) }, future::or(timer, stopped))
}

/// `fut` against `timer` alone, without the stop signal (a smaller future than
/// [`bounded`], for waits that shutdown need not cut short, such as a reply's write).
pub(crate) fn race_timer<'a, T: 'a>(
    timer: impl Future<Output = ()> + 'a,
    fut: impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a,
) -> impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a {
    future::or(fut, async move {
        timer.await;
        Ok(Err(Interrupt::Deadline))
    })
}

/// A session's timer, kept from one wait to the next and re-armed only when the
/// deadline moves earlier. Input pushes the idle deadline later on every command; rather
/// than registering a new timer each time (a few system calls per command), the old one
/// is left to fire early, which costs one spurious wake per `GSMTP_TIMEOUT`: the
/// connection's `handle_timeout` does nothing before the deadline, and the timer is
/// re-armed then.
#[derive(Debug)]
pub(crate) struct Deadline {
    timer: async_io::Timer,
    at: Option<Instant>,
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Self {
            timer: async_io::Timer::never(),
            at: None,
        }
    }

    /// Makes the timer fire at `deadline`, or earlier.
    pub(crate) fn arm(&mut self, deadline: Option<Instant>) {
        match deadline {
            Some(d) if self.at.is_none_or(|at| d < at) => {
                self.timer.set_at(d);
                self.at = Some(d);
            }
            Some(_) => {}
            None if self.at.take().is_some() => self.timer = async_io::Timer::never(),
            None => {}
        }
    }

    /// Resolves when the timer fires; it is then disarmed.
    pub(crate) async fn fired(&mut self) {
        future::poll_fn(|cx| self.poll_fired(cx)).await;
    }

    /// Ready when the timer fires; it is then disarmed.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        std::task::ready!(Pin::new(&mut self.timer).poll(cx));
        self.at = None;
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait that began before the fire, one polled by hand, and one that begins after
    /// it all return; a signal that is never fired keeps its waits pending.
    #[test]
    fn a_fired_signal_wakes_every_wait() {
        let signal = Signal::new();
        let (woke, woken) = std::sync::mpsc::channel();
        {
            let signal = signal.clone();
            std::thread::spawn(move || {
                future::block_on(signal.wait());
                let _ = woke.send(());
            });
        }
        let mut listener = None;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(signal.poll_wait(&mut listener, &mut cx).is_pending());
        assert!(listener.is_some(), "the hand-polled wait is registered");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!signal.fired());
        signal.fire();
        woken
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the wait that began before the fire returns");
        assert!(signal.poll_wait(&mut listener, &mut cx).is_ready());
        future::block_on(signal.wait());
        assert!(signal.fired());
        let never = Signal::never();
        assert!(never.poll_wait(&mut None, &mut cx).is_pending());
    }
}
