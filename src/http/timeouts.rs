//! Per-connection time limits, so that slow clients cannot hold the
//! server's connections (slowloris, slow bodies):
//!
//! - a request head must arrive within `header_read_timeout` of its first
//!   byte (of the connection's opening, for a new connection);
//! - a keep-alive connection may wait `idle_timeout` for its next request;
//! - a request body must arrive within `body_read_timeout` of its head;
//! - a write may wait at most `write_timeout` for the client to read;
//! - a connection idle between requests, or whose request head has been
//!   arriving for a while, closes when the accept loop needs its slot
//!   ([`super::admission::Shedding`]); one whose request is handled or
//!   whose response is being written never does.
//!
//! hyper's own `header_read_timeout` starts its clock as soon as a
//! connection waits for a request, so it would also close keep-alive
//! connections after the header timeout: far below the 60 s a load
//! balancer keeps its upstream connections (nginx's `keepalive_timeout`),
//! which then races the close and answers 502. Hence this small state
//! machine: the head clock starts at the head's first byte, the idle clock
//! when a response is done.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::admission::{STALLED_AFTER, Sheddable, Shedding, Ticket};

/// The limits a connection lives by (`server.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub idle: Duration,
    pub write: Duration,
}

const NONE: u64 = u64::MAX;

/// What one connection is doing, shared by its IO and its service.
/// Times are milliseconds since the connection was accepted.
pub struct Activity {
    limits: Limits,
    opened: Instant,
    in_flight: AtomicU32,
    /// When the head being read began (`NONE`: no head under way).
    head_since: AtomicU64,
    /// When the last response was done.
    idle_since: AtomicU64,
    /// The connection's task, if it waits to read while a request is
    /// handled: woken when the handler is done, to start the idle clock
    /// (hyper does not read again by itself until bytes arrive).
    reader: AtomicWaker,
    /// `None` for a trusted proxy's connection: never shed.
    shedding: Option<Arc<Shedding>>,
}

impl Activity {
    /// A new connection: it must send a complete head within the header
    /// timeout, as if its head had begun.
    pub fn new(limits: Limits, shedding: Option<Arc<Shedding>>) -> Arc<Activity> {
        Arc::new(Activity {
            limits,
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            reader: AtomicWaker::new(),
            shedding,
        })
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64, plus: Duration) -> Instant {
        self.opened + Duration::from_millis(ms) + plus
    }

    /// Bytes arrived: between requests they begin a head.
    fn received(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A head is complete: the handler runs, and no read clock does.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When a read that is still waiting must give up, if ever.
    fn read_deadline(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Relaxed) {
            NONE => Some(self.at(self.idle_since.load(Ordering::Relaxed), self.limits.idle)),
            since => Some(self.at(since, self.limits.header_read)),
        }
    }

    /// Which shedding queue the connection belongs in now, or (a head
    /// under way, not stalled yet) when it will; `Ok(None)` while a request
    /// is handled.
    fn sheddable(&self) -> Result<Option<Sheddable>, Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Ok(None);
        }
        match self.head_since.load(Ordering::Relaxed) {
            NONE => Ok(Some(Sheddable::Idle)),
            since => {
                let stalled_at = self.at(since, STALLED_AFTER);
                if Instant::now() < stalled_at {
                    Err(stalled_at)
                } else {
                    Ok(Some(Sheddable::Stalled))
                }
            }
        }
    }

    pub fn body_deadline(&self) -> Instant {
        Instant::now() + self.limits.body_read
    }
}

/// Held while a request is handled; dropping it starts the idle clock.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.reader.wake();
    }
}

/// A connection's socket whose reads fail with `TimedOut` once the head or
/// idle clock runs out, and whose writes fail once the client has not read
/// for `write_timeout`: either closes the connection.
pub struct TimedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Created on the first read that has to wait.
    sleep: Option<(Instant, Pin<Box<Sleep>>)>,
    /// Armed when a write has to wait; cleared when one goes through.
    write_stall: Option<Pin<Box<Sleep>>>,
    /// While idle or stalled: the place in the shedding queue. Dropped
    /// while busy, so a request in progress is never shed.
    ticket: Option<Ticket>,
}

impl<T> TimedIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        TimedIo {
            inner,
            activity,
            sleep: None,
            write_stall: None,
            ticket: None,
        }
    }

    /// What a write that returned `outcome` becomes: progress disarms the
    /// stall clock; waiting arms it, and past `write_timeout` the write
    /// fails.
    fn through_stall<R>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match outcome {
            Poll::Ready(result) => {
                self.write_stall = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.activity.limits.write;
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if stall.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read its responses",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        // A response still being written (the client's window is full):
        // busy, under `write_timeout` alone. hyper reads meanwhile only to
        // notice a disconnect, so neither shedding nor the idle clock may
        // answer that read.
        if self.write_stall.is_some() {
            self.ticket = None;
            return false;
        }
        loop {
            let (shed, stalls_at) = self.asked_to_shed(cx);
            if shed {
                return true;
            }
            let Some(deadline) = self.activity.read_deadline() else {
                self.activity.reader.register(cx.waker());
                return false;
            };
            // Wake at the stall point too, to join the stalled queue then.
            let wake = stalls_at.map_or(deadline, |at| at.min(deadline));
            let sleep = match &mut self.sleep {
                Some((armed, sleep)) => {
                    if *armed != wake {
                        sleep.as_mut().reset(wake);
                        *armed = wake;
                    }
                    sleep
                }
                None => {
                    let sleep = Box::pin(tokio::time::sleep_until(wake));
                    &mut self.sleep.insert((wake, sleep)).1
                }
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if wake >= deadline {
                return true;
            }
            // The head stalled: go round once more to join the queue.
        }
    }

    /// Whether this connection has been asked to make room, and, for a
    /// head under way, when it will count as stalled.
    fn asked_to_shed(&mut self, cx: &mut Context<'_>) -> (bool, Option<Instant>) {
        let Some(shedding) = &self.activity.shedding else {
            return (false, None);
        };
        let kind = match self.activity.sheddable() {
            Ok(Some(kind)) => kind,
            Ok(None) => {
                self.ticket = None;
                return (false, None);
            }
            Err(stalls_at) => {
                self.ticket = None;
                return (false, Some(stalls_at));
            }
        };
        if self.ticket.as_ref().is_none_or(|t| t.kind != kind) {
            self.ticket = Some(shedding.ticket(kind));
        }
        let asked = self.ticket.as_mut().is_some_and(|t| t.asked(cx));
        (asked, None)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.activity.received();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client was too slow to send a request",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.through_stall(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.through_stall(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.through_stall(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that holds its request's [`InFlight`] until it is
/// written whole (or dropped): the connection is busy until then, so
/// neither the idle clock nor shedding can cut a response being sent.
pub struct HeldBody<B> {
    inner: B,
    held: Option<InFlight>,
}

impl<B> HeldBody<B> {
    pub fn new(inner: B, held: InFlight) -> Self {
        HeldBody {
            inner,
            held: Some(held),
        }
    }
}

impl<B> Body for HeldBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.held = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once its deadline passes, however the bytes
/// trickle in. The timer is made only if the body has to wait at all
/// (most bodies arrive with their head).
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, deadline: Instant) -> Self {
        DeadlineBody {
            inner,
            deadline,
            sleep: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyTimedOut.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
