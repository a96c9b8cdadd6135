//! The accept loop: hyper's HTTP/1 connection builder over each accepted
//! socket, at most `server.max_connections` at once, each under the time
//! limits of [`super::timeouts`], with graceful shutdown.
//!
//! `axum::serve` does neither limit, hence this loop. A connection past the
//! cap is not accepted: it waits in the kernel's backlog until a slot is
//! free.

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

use super::timeouts::{Activity, DeadlineBody, Limits, TimedIo};
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
    let graceful = GracefulShutdown::new();
    let mut drain = std::pin::pin!(drain);
    loop {
        let accepted = tokio::select! {
            () = &mut drain => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let (permit, stream, peer) = accepted;
        // Responses are small and written whole: send them now rather than
        // let Nagle's algorithm hold them for the peer's ACK.
        let _ = stream.set_nodelay(true);
        let activity = Activity::new(limits);
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
                let response = response.await;
                drop(in_flight);
                response
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

/// The next connection, once a slot is free for it.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (tokio::sync::OwnedSemaphorePermit, TcpStream, SocketAddr) {
    let permit = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (permit, stream, peer),
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
