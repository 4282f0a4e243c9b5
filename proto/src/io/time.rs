//! Waiting with a bound: signals, deadlines, and [`with_timeout`], the one way the server
//! gives up on something slow (a client, a destination, a handshake).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
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

/// The sessions' deadlines, in one queue that a thread of their own serves: it sleeps
/// until the earliest and wakes the sessions whose deadline has passed. With a timer per
/// session in async-io instead, the reactor would arm its timerfd on every turn (a
/// kernel timer started and stopped for every wait of every session) and be woken for
/// each new timer (an eventfd written and read per connection): about 9 % of the CPU a
/// short connection costs, measured with smtp-source. Here arming a deadline is an entry
/// in a map, and only one earlier than all the others wakes the thread.
///
/// A server's generations share the queue; the thread ends with it.
#[derive(Debug)]
pub(crate) struct Timers(Arc<TimerQueue>);

#[derive(Debug, Default)]
struct TimerQueue {
    queue: Mutex<Queue>,
    /// Wakes the thread: an earlier deadline, or the end.
    sooner: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    /// The armed deadlines, earliest first, numbered so that equal ones stay apart, each
    /// with the waker of the session that waits (once it has waited).
    armed: BTreeMap<(Instant, u64), Option<Waker>>,
    /// The next deadline's number.
    next: u64,
    /// When the thread wakes next: a deadline before it wakes the thread at once.
    wakes_at: Option<Instant>,
    /// The queue is gone: the thread ends.
    closed: bool,
}

impl Timers {
    /// A queue, and the thread that serves it.
    pub(crate) fn start() -> io::Result<Self> {
        let q = Arc::new(TimerQueue::default());
        let served = Arc::clone(&q);
        std::thread::Builder::new()
            .name("gsmtp-timers".into())
            .spawn(move || served.serve())?;
        Ok(Self(q))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.0.lock()
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.lock().closed = true;
        self.0.sooner.notify_one();
    }
}

impl TimerQueue {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: wakes the sessions whose deadline has passed, then sleeps until the
    /// next deadline or an earlier one.
    fn serve(&self) {
        let mut q = self.lock();
        while !q.closed {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(first) = q.armed.first_entry() {
                if first.key().0 > now {
                    break;
                }
                due.extend(first.remove());
            }
            if !due.is_empty() {
                drop(q);
                due.into_iter().for_each(Waker::wake);
                q = self.lock();
                continue;
            }
            q.wakes_at = q.armed.first_key_value().map(|(k, _)| k.0);
            q = match q.wakes_at {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.sooner
                        .wait_timeout(q, wait)
                        .map_or_else(|e| e.into_inner().0, |r| r.0)
                }
                None => self.sooner.wait(q).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A session's deadline in [`Timers`], kept from one wait to the next and moved only
/// when it moves earlier. Input pushes the idle deadline later on every command; rather
/// than moving it each time, the old one is left to fire early, which costs one
/// spurious wake per `GSMTP_TIMEOUT`: the connection's `handle_timeout` does nothing
/// before the deadline, and the deadline is armed again then.
#[derive(Debug)]
pub(crate) struct Deadline<'a> {
    timers: &'a Timers,
    /// The armed deadline's place in the queue; gone from it once fired.
    key: Option<(Instant, u64)>,
}

impl<'a> Deadline<'a> {
    /// A deadline in `timers`, not armed.
    pub(crate) fn new(timers: &'a Timers) -> Self {
        Self { timers, key: None }
    }

    /// Makes the deadline fire at `deadline`, or earlier; `None` disarms it.
    pub(crate) fn arm(&mut self, deadline: Option<Instant>) {
        match deadline {
            Some(at) if self.key.is_none_or(|(k, _)| at < k) => {
                let mut q = self.timers.lock();
                let waker = self.key.and_then(|k| q.armed.remove(&k)).flatten();
                let key = (at, q.next);
                q.next += 1;
                q.armed.insert(key, waker);
                self.key = Some(key);
                if q.wakes_at.is_none_or(|t| at < t) {
                    q.wakes_at = Some(at);
                    drop(q);
                    self.timers.0.sooner.notify_one();
                }
            }
            Some(_) => {}
            None => self.disarm(),
        }
    }

    fn disarm(&mut self) {
        if let Some(k) = self.key.take() {
            self.timers.lock().armed.remove(&k);
        }
    }

    /// Resolves when the deadline fires; it is then disarmed.
    pub(crate) async fn fired(&mut self) {
        future::poll_fn(|cx| self.poll_fired(cx)).await;
    }

    /// Ready when the deadline fires; it is then disarmed. Never ready unarmed.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(key) = self.key else {
            return Poll::Pending;
        };
        if let Some(w) = self.timers.lock().armed.get_mut(&key) {
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        self.key = None;
        Poll::Ready(())
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.disarm();
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
        let waker = Waker::noop();
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

    /// A deadline fires at its time, not before (the thread sleeps until the earliest,
    /// and an earlier one armed meanwhile wakes it); one armed later than it stands fires
    /// at the earlier time, as documented; a disarmed one never fires.
    #[test]
    fn deadlines_fire_on_time_from_the_timer_thread() {
        use std::time::Duration;
        let timers = Timers::start().unwrap();
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        // A far deadline first: the thread sleeps until it.
        let mut far = Deadline::new(&timers);
        far.arm(Some(ms(60_000)));
        let mut near = Deadline::new(&timers);
        near.arm(Some(ms(200)));
        future::block_on(near.fired());
        assert!(Instant::now() >= ms(200), "not before its time");
        assert!(
            Instant::now() < ms(5_000),
            "the earlier deadline woke the thread"
        );
        // Armed later than what stands: fires at what stands (early), then is disarmed.
        let mut early = Deadline::new(&timers);
        early.arm(Some(ms(400)));
        early.arm(Some(ms(60_000)));
        future::block_on(early.fired());
        assert!(Instant::now() < ms(5_000));
        // Disarmed: pending while a later one fires.
        let mut off = Deadline::new(&timers);
        off.arm(Some(ms(500)));
        off.arm(None);
        let mut later = Deadline::new(&timers);
        later.arm(Some(ms(700)));
        future::block_on(later.fired());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(off.poll_fired(&mut cx).is_pending());
        assert!(far.poll_fired(&mut cx).is_pending());
        // Dropped deadlines leave the queue.
        drop((far, off, near, early, later));
        assert!(timers.lock().armed.is_empty());
        // The thread ends with the queue (the only such thread in these tests).
        let threads = || {
            std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "gsmtp-timers")
                })
                .count()
        };
        assert_eq!(threads(), 1);
        drop(timers);
        let end = Instant::now() + Duration::from_secs(10);
        while threads() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(threads(), 0, "the timer thread ended");
    }
}
