//! The metrics and health listener (`metrics.listen`): a minimal HTTP/1.1 server, one request
//! per connection, answered and closed.
//!
//! - `GET /metrics`: Prometheus text format 0.0.4 (process metrics only until the broker has
//!   opened its data directory).
//! - `GET /health/live`: 200 while the process runs.
//! - `GET /health/ready`: 200 once recovery is done and the Kafka listener accepts; 503 before
//!   that and again from the moment graceful shutdown begins.
//!
//! Other paths are 404, other methods 405 (HEAD is GET without a body). Bounded like the Kafka
//! listener: request head size, read and write timeouts, concurrent connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fjord_broker::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

/// Largest request head (request line and headers) read; a longer one is answered 431.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request head, and to read the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once; further ones wait in the accept backlog.
const CONNECTIONS_MAX: usize = 64;
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What the health endpoints report, shared with the start-up sequence and the Kafka listener.
#[derive(Default)]
pub struct HealthState {
    broker: OnceLock<Arc<Broker>>,
    ready: AtomicBool,
}

impl HealthState {
    /// The broker has opened its data directory: `/metrics` shows everything from now on.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// Ready: recovery done and the Kafka listener accepting; not ready once shutdown begins.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.broker.get().is_some()
    }
}

/// Serves connections until the task is aborted.
pub async fn run(listener: TcpListener, state: Arc<HealthState>) {
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                debug!(error = %err, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            serve_connection(stream, &state).await;
            drop(permit);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, state: &HealthState) {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => {
            debug!("metrics listener: request head not received in time");
            return;
        }
        Ok(Err(HeadError::Io(err))) => {
            debug!(error = %err, "metrics listener: read failed");
            return;
        }
        Ok(Err(HeadError::TooLarge)) => Response::text(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        ),
        Ok(Ok(head)) => match parse_request(&head) {
            Ok(request) => respond(&request, state).await,
            Err(reason) => {
                debug!(reason, "metrics listener: bad request");
                Response::text(400, "Bad Request", "bad request\n")
            }
        },
    };
    let bytes = response.to_bytes();
    match tokio::time::timeout(IO_TIMEOUT, stream.write_all(&bytes)).await {
        Ok(Ok(())) => {
            let _ = stream.shutdown().await;
        }
        Ok(Err(err)) => debug!(error = %err, "metrics listener: write failed"),
        Err(_) => debug!("metrics listener: client did not read the response in time"),
    }
}

#[derive(Debug)]
enum HeadError {
    TooLarge,
    Io(std::io::Error),
}

/// Reads until the blank line that ends the request head (a body, if any, is ignored).
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if head_end(&head).is_some() {
            return Ok(head);
        }
        if head.len() >= REQUEST_HEAD_BYTES_MAX {
            return Err(HeadError::TooLarge);
        }
        let read = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if read == 0 {
            return Err(HeadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

/// Where the head ends (`\r\n\r\n`, or `\n\n` from lenient clients).
fn head_end(buffer: &[u8]) -> Option<usize> {
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buffer.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
}

/// Parses the request line (`METHOD SP TARGET SP HTTP/x.y`); headers are not needed.
pub fn parse_request(head: &[u8]) -> Result<Request, &'static str> {
    let line_end = head
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no request line")?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| "request line is not UTF-8")?;
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("malformed method");
    }
    if !version.starts_with("HTTP/1.") {
        return Err("unsupported HTTP version");
    }
    if !target.starts_with('/') {
        return Err("request target must be a path");
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Live,
    Ready,
    NotFound,
    MethodNotAllowed,
}

pub fn route(request: &Request) -> Route {
    let route = match request.path.as_str() {
        "/metrics" => Route::Metrics,
        "/health/live" => Route::Live,
        "/health/ready" => Route::Ready,
        _ => return Route::NotFound,
    };
    if request.method == "GET" || request.method == "HEAD" {
        route
    } else {
        Route::MethodNotAllowed
    }
}

async fn respond(request: &Request, state: &HealthState) -> Response {
    let mut response = match route(request) {
        Route::Live => Response::text(200, "OK", "ok\n"),
        Route::Ready if state.is_ready() => Response::text(200, "OK", "ready\n"),
        Route::Ready => Response::text(503, "Service Unavailable", "not ready\n"),
        Route::Metrics => {
            let broker = state.broker.get().cloned();
            // Scraping takes every partition's lock briefly and reads /proc: off the runtime.
            let body = tokio::task::spawn_blocking(move || match broker {
                Some(broker) => broker.render_metrics(),
                None => fjord_broker::metrics::render_process_metrics(),
            })
            .await;
            match body {
                Ok(body) => Response {
                    status: 200,
                    reason: "OK",
                    content_type: METRICS_CONTENT_TYPE,
                    body: body.into_bytes(),
                    allow: None,
                    content_length_override: None,
                },
                Err(err) => {
                    tracing::error!(error = %err, "rendering metrics failed");
                    Response::text(500, "Internal Server Error", "metrics unavailable\n")
                }
            }
        }
        Route::NotFound => Response::text(404, "Not Found", "not found\n"),
        Route::MethodNotAllowed => {
            let mut response = Response::text(405, "Method Not Allowed", "method not allowed\n");
            response.allow = Some("GET, HEAD");
            response
        }
    };
    if request.method == "HEAD" {
        // Same headers (Content-Length included), no body.
        response.head_only();
    }
    response
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    allow: Option<&'static str>,
    /// HEAD: the length the GET body would have.
    content_length_override: Option<usize>,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: TEXT_CONTENT_TYPE,
            body: body.as_bytes().to_vec(),
            allow: None,
            content_length_override: None,
        }
    }

    fn head_only(&mut self) {
        let length = self.body.len();
        self.body.clear();
        self.content_length_override = Some(length);
    }

    fn to_bytes(&self) -> Vec<u8> {
        let length = self.content_length_override.unwrap_or(self.body.len());
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status, self.reason, self.content_type, length
        );
        if let Some(allow) = self.allow {
            out.push_str(&format!("Allow: {allow}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn parses_request_lines_and_drops_the_query() {
        let parsed = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(parsed, request("GET", "/metrics"));
        let parsed = parse_request(b"HEAD /health/ready HTTP/1.0\n\n").unwrap();
        assert_eq!(parsed, request("HEAD", "/health/ready"));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for head in [
            &b""[..],
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
        ] {
            assert!(parse_request(head).is_err(), "{head:?}");
        }
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(20));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn routes_by_path_then_method() {
        assert_eq!(route(&request("GET", "/metrics")), Route::Metrics);
        assert_eq!(route(&request("HEAD", "/metrics")), Route::Metrics);
        assert_eq!(route(&request("GET", "/health/live")), Route::Live);
        assert_eq!(route(&request("GET", "/health/ready")), Route::Ready);
        assert_eq!(route(&request("GET", "/health")), Route::NotFound);
        assert_eq!(route(&request("GET", "/metrics/")), Route::NotFound);
        assert_eq!(route(&request("POST", "/metrics")), Route::MethodNotAllowed);
        assert_eq!(route(&request("DELETE", "/nope")), Route::NotFound);
    }

    #[test]
    fn responses_close_the_connection_and_head_keeps_the_length() {
        let mut response = Response::text(200, "OK", "ok\n");
        response.head_only();
        let text = String::from_utf8(response.to_bytes()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn oversize_heads_get_431_and_readiness_follows_the_state() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(HealthState::default());
        let server = tokio::spawn(run(listener, state.clone()));
        let exchange = |payload: Vec<u8>| async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            // The server may answer (and close) before reading everything we send.
            let _ = stream.write_all(&payload).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        };
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', REQUEST_HEAD_BYTES_MAX + 10));
        assert!(exchange(huge).await.starts_with("HTTP/1.1 431 "));
        let ready = || exchange(b"GET /health/ready HTTP/1.1\r\n\r\n".to_vec());
        assert!(ready().await.starts_with("HTTP/1.1 503 "));
        // Ready needs the broker too, which this test has none of.
        state.set_ready(true);
        assert!(ready().await.starts_with("HTTP/1.1 503 "));
        let live = exchange(b"GET /health/live HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(live.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(live.ends_with("\r\n\r\nok\n"));
        let metrics = exchange(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(metrics.contains("fjord_build_info{version="));
        let garbage = exchange(b"\x00\x01\x02\r\n\r\n".to_vec()).await;
        assert!(garbage.starts_with("HTTP/1.1 400 "));
        let post = exchange(b"POST /metrics HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(post.starts_with("HTTP/1.1 405 "));
        server.abort();
    }

    proptest::proptest! {
        /// Whatever a client sends, the parser answers Ok or Err, never panics, and a path it
        /// accepts is a path without query or fragment.
        #[test]
        fn arbitrary_heads_never_panic(head in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = head_end(&head);
            if let Ok(request) = parse_request(&head) {
                proptest::prop_assert!(request.path.starts_with('/'));
                proptest::prop_assert!(!request.path.contains(['?', '#']));
                let _ = route(&request);
            }
        }

        /// Well-formed request lines parse back to their method and path.
        #[test]
        fn well_formed_request_lines_round_trip(
            method in "[A-Z]{1,10}",
            path in "/[a-z/]{0,30}",
            query in proptest::option::of("[a-z=&]{0,20}"),
        ) {
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let request = parse_request(head.as_bytes()).map_err(proptest::test_runner::TestCaseError::fail)?;
            proptest::prop_assert_eq!(request.method, method);
            proptest::prop_assert_eq!(request.path, path);
            proptest::prop_assert_eq!(head_end(head.as_bytes()), Some(head.len() - 4));
        }
    }
}
