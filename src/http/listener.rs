//! The accept loop: hyper's HTTP/1 connection builder over each accepted
//! socket, at most `server.max_connections` at once, each under the time
//! limits of [`super::timeouts`], with graceful shutdown.
//!
//! `axum::serve` does neither limit, hence this loop. Who gets a slot is
//! [`super::admission`]'s business: a connection from an address past its
//! share is closed at once; one past the cap waits (in this loop, and the
//! ones behind it in the kernel's backlog) while idle connections are asked
//! to make room.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::admission::{AddressSlot, PerAddress, Shedding};
use super::timeouts::{Activity, DeadlineBody, HeldBody, Limits, TimedIo};
use crate::config::ServerConfig;

/// Serves `router` on `listener` until `drain` resolves, then waits for
/// the open connections to finish their requests and close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    drain: impl Future<Output = ()>,
) {
    let limits = Limits {
        header_read: config.header_read_timeout,
        body_read: config.body_read_timeout,
        idle: config.idle_timeout,
        write: config.write_timeout,
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let admission = Admission {
        slots,
        per_address: PerAddress::new(
            config.max_connections_per_address,
            config.trusted_proxies.clone(),
        ),
        shedding: Shedding::new(),
    };
    let graceful = GracefulShutdown::new();
    let mut drain = std::pin::pin!(drain);
    loop {
        let accepted = tokio::select! {
            () = &mut drain => break,
            accepted = admission.next(&listener) => accepted,
        };
        let (permit, stream, peer) = accepted;
        // Responses are small and written whole: send them now rather than
        // let Nagle's algorithm hold them for the peer's ACK.
        let _ = stream.set_nodelay(true);
        let shedding =
            (!admission.per_address.is_exempt(peer.ip())).then(|| admission.shedding.clone());
        let activity = Activity::new(limits, shedding);
        let io = TokioIo::new(TimedIo::new(stream, activity.clone()));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.request_started();
            let deadline = activity.body_deadline();
            let mut request =
                request.map(|body| axum::body::Body::new(DeadlineBody::new(body, deadline)));
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await?;
                // The connection stays busy until the body is written.
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| axum::body::Body::new(HeldBody::new(body, in_flight))),
                )
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// How often a connection waiting for a slot asks again for one to close
/// (the one asked may have become busy meanwhile).
const SHED_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// What a connection holds while open: a slot under the global cap and its
/// address's share.
type Permit = (tokio::sync::OwnedSemaphorePermit, AddressSlot);

struct Admission {
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    shedding: Arc<Shedding>,
}

impl Admission {
    /// The next connection that may be served, once a slot is free for it.
    async fn next(&self, listener: &TcpListener) -> (Permit, TcpStream, SocketAddr) {
        loop {
            let (stream, peer) = accept(listener).await;
            let Some(address_slot) = self.per_address.admit(peer.ip()) else {
                tracing::debug!(%peer, "connection refused: its address holds its share");
                drop(stream);
                continue;
            };
            let slot = self.slot().await;
            return ((slot, address_slot), stream, peer);
        }
    }

    /// A slot under the global cap; while none is free, one connection is
    /// asked to close for it (again each [`SHED_AGAIN_AFTER`]).
    async fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return slot;
        }
        loop {
            self.shedding.shed_one();
            let slot = self.slots.clone().acquire_owned();
            if let Ok(slot) = tokio::time::timeout(SHED_AGAIN_AFTER, slot).await {
                return slot.expect("the connection semaphore is never closed");
            }
        }
    }
}

/// The next accepted connection.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if is_connection_error(&e) => {}
            // Out of file descriptors and the like: pause, as axum::serve
            // does, rather than spin.
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Errors that concern one connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
