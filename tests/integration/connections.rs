//! Connection limits over raw TCP: slow heads and slow bodies are cut, idle
//! keep-alive connections are closed, connections past the cap wait while
//! idle ones make room, one address gets its share and no more, and
//! ordinary keep-alive traffic is unaffected.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_half_sent_head_is_closed_after_the_header_timeout,
    a_slow_body_is_cut,
    an_idle_keep_alive_connection_is_closed_after_the_idle_timeout,
    connections_past_the_cap_wait_for_a_free_slot,
    idle_connections_make_room_when_the_cap_is_reached,
    a_stalled_head_makes_room_before_an_idle_connection,
    a_response_being_written_is_not_shed,
    one_address_cannot_take_more_than_its_share,
    a_client_that_never_reads_is_cut_after_the_write_timeout,
);

/// Generous bound for "the server closed it": far above every configured
/// limit here, far below the old behaviour (never).
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: tessera\r\n\r\n";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.url.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; returns what it sent, or
/// `None` if it was still open after `within`.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// Reads one whole response to a small request (headers and a short body).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(CLOSED_WITHIN, stream.read(&mut buf))
        .await
        .expect("a response")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn a_half_sent_head_is_closed_after_the_header_timeout(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nheader_read_timeout = \"300ms\"")
        .start()
        .await;
    let mut slow = connect(&app).await;
    slow.write_all(b"POST /oauth/token HTTP/1.1\r\nHost: tessera\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut slow, CLOSED_WITHIN).await.is_some(),
        "a connection that sent half a head is closed"
    );

    // A connection that sends nothing at all gets no longer.
    let mut silent = connect(&app).await;
    assert!(
        read_until_closed(&mut silent, CLOSED_WITHIN)
            .await
            .is_some()
    );

    // A whole head is served as before.
    let mut prompt = connect(&app).await;
    prompt.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut prompt).await.starts_with("HTTP/1.1 200"));
}

async fn a_slow_body_is_cut(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nbody_read_timeout = \"300ms\"")
        .start()
        .await;
    let (mut from_server, mut to_server) = connect(&app).await.into_split();
    to_server
        .write_all(
            b"POST /oauth/token HTTP/1.1\r\nHost: tessera\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n\
              grant_type=client_credentials",
        )
        .await
        .unwrap();
    // One byte every 100 ms: every read is prompt, the body as a whole is
    // not (it would take 17 s).
    let trickle = tokio::spawn(async move {
        for _ in 0..170 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if to_server.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let answer = read_until_closed(&mut from_server, CLOSED_WITHIN).await;
    trickle.abort();
    let answer = answer.expect("the connection is closed while the body still trickles");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"1500ms\"")
        .start()
        .await;
    let mut conn = connect(&app).await;
    conn.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle longer than the header timeout, shorter than the idle timeout:
    // the connection is kept for its next request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    conn.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        read_until_closed(&mut conn, CLOSED_WITHIN).await.as_deref(),
        Some(""),
        "an idle connection is closed"
    );
}

async fn connections_past_the_cap_wait_for_a_free_slot(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nmax_connections = 2\nheader_read_timeout = \"60s\"")
        .start()
        .await;
    // Two connections in the middle of a request take both slots; they are
    // not idle, so nothing makes room.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(&app).await;
        conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(conn);
    }
    // Give the accept loop time to take both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect(&app).await;
    third.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection is not served while two requests are under way"
    );
    // One closes: the third is accepted and answered.
    drop(held.pop());
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
}

/// Idle keep-alive connections would hold every slot until the idle
/// timeout (75 s by default): at the cap they are closed to make room.
async fn idle_connections_make_room_when_the_cap_is_reached(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nmax_connections = 2\nidle_timeout = \"60s\"")
        .start()
        .await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(&app).await;
        conn.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
        idle.push(conn);
    }
    let mut third = connect(&app).await;
    third.write_all(HEALTHZ).await.unwrap();
    assert!(
        read_response(&mut third).await.starts_with("HTTP/1.1 200"),
        "the new connection is served long before the idle timeout"
    );
    let mut closed = 0;
    for conn in &mut idle {
        if read_until_closed(conn, Duration::from_millis(500))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "an idle connection made room");
}

/// Slowloris connections (a head that never completes) go before the
/// idle keep-alive connections of well-behaved clients.
async fn a_stalled_head_makes_room_before_an_idle_connection(backend: Backend) {
    let app = TestApp::builder(backend)
        .config(
            "[server]\nmax_connections = 2\nidle_timeout = \"60s\"\nheader_read_timeout = \"60s\"",
        )
        .start()
        .await;
    let mut stalled = connect(&app).await;
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut idle = connect(&app).await;
    idle.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    // Past the two seconds after which a head counts as stalled.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut new = connect(&app).await;
    new.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut new).await.starts_with("HTTP/1.1 200"));
    assert!(
        read_until_closed(&mut stalled, Duration::from_secs(1))
            .await
            .is_some(),
        "the stalled head made room"
    );
    idle.write_all(HEALTHZ).await.unwrap();
    assert!(
        read_response(&mut idle).await.starts_with("HTTP/1.1 200"),
        "the idle keep-alive connection was kept"
    );
}

/// A response the client reads slowly is still being written after its
/// handler returned: the connection is busy, not idle, until it is sent.
async fn a_response_being_written_is_not_shed(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nmax_connections = 2\nidle_timeout = \"60s\"")
        .start()
        .await;
    // About 600 kB of client listing: far more than the socket buffers.
    for i in 0..30 {
        let audiences: Vec<String> = (0..200)
            .map(|j| format!("urn:app{i}:aud{j}:{}", "x".repeat(80)))
            .collect();
        let response = app
            .admin_post(
                "/admin/v1/clients",
                &serde_json::json!({"name": format!("c{i}"), "audiences": audiences}),
            )
            .await;
        assert!(response.status().is_success());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    small_segments(&socket);
    let mut slow = socket
        .connect(app.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let request = format!(
        "GET /admin/v1/clients HTTP/1.1\r\nHost: tessera\r\nAuthorization: Bearer {}\r\n\r\n",
        app.admin_token()
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut idle = connect(&app).await;
    idle.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    // A third connection at the cap: someone must make room, not `slow`.
    let mut new = connect(&app).await;
    new.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut new).await.starts_with("HTTP/1.1 200"));
    let mut received = Vec::new();
    let _ = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 16384];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&received);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if received.len() >= end + 4 + length {
                    break;
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received);
    let end = text.find("\r\n\r\n").expect("a response head") + 4;
    let length: usize = text[..end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    assert_eq!(received.len() - end, length, "the response arrived whole");
}

/// TCP_MAXSEG 536 on a socket about to connect: with a tiny receive
/// buffer, the server's send buffer then stays small too, so a large
/// response is still being written when its handler has returned.
fn small_segments(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
    }
    const IPPROTO_TCP: i32 = 6;
    const TCP_MAXSEG: i32 = 2;
    let mss: i32 = 536;
    // SAFETY: a valid socket descriptor and a pointer to a live i32 of the
    // length given.
    let rc = unsafe { setsockopt(socket.as_raw_fd(), IPPROTO_TCP, TCP_MAXSEG, &mss, 4) };
    assert_eq!(rc, 0, "setsockopt TCP_MAXSEG");
}

async fn one_address_cannot_take_more_than_its_share(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nmax_connections_per_address = 2\nidle_timeout = \"60s\"")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = connect(&app).await;
        conn.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
        held.push(conn);
    }
    // The third from the same address is closed unanswered, at once.
    let mut third = connect(&app).await;
    let _ = third.write_all(HEALTHZ).await;
    let answer = read_until_closed(&mut third, CLOSED_WITHIN).await;
    assert_eq!(answer.as_deref(), Some(""), "closed without a response");
    // The two it holds still work, and a slot freed is a slot to take.
    held[0].write_all(HEALTHZ).await.unwrap();
    assert!(
        read_response(&mut held[0])
            .await
            .starts_with("HTTP/1.1 200")
    );
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = connect(&app).await;
    fourth.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut fourth).await.starts_with("HTTP/1.1 200"));
}

/// A client that pipelines requests and never reads its responses fills
/// the server's send buffer; past `write_timeout` the server gives up on
/// it instead of holding the connection (and a slot) for ever.
async fn a_client_that_never_reads_is_cut_after_the_write_timeout(backend: Backend) {
    let app = TestApp::builder(backend)
        .config("[server]\nwrite_timeout = \"1s\"\nidle_timeout = \"60s\"")
        .start()
        .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = app.url.trim_start_matches("http://").parse().unwrap();
    let (mut reader, mut writer) = socket.connect(addr).await.unwrap().into_split();
    let flood = tokio::spawn(async move {
        let batch =
            b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: tessera\r\n\r\n".repeat(1000);
        for _ in 0..100 {
            let sent = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&batch)).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
    });
    // Not reading: the server's writes stall and its clock runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let closed = read_until_closed(&mut reader, CLOSED_WITHIN).await;
    flood.abort();
    assert!(
        closed.is_some(),
        "the connection was still open {CLOSED_WITHIN:?} after the client started reading"
    );
}
