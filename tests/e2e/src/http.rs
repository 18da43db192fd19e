//! A minimal blocking HTTP/1.0 GET for health checks and `/metrics` scrapes.
//!
//! Health waits run in plain threads (stack start-up, teardown, the Ctrl-C path), where an
//! async client would need a runtime; HTTP/1.0 keeps responses un-chunked and lets the
//! server close the connection, so reading to EOF gives the whole body.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// An HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

/// Errors of [`get`].
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, sending or reading failed.
    #[error("GET http://{host}:{port}{path}: {source}")]
    Io {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The answer was not HTTP.
    #[error("GET http://{host}:{port}{path}: not an HTTP response: {head:?}")]
    Malformed {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Path.
        path: String,
        /// The first line received.
        head: String,
    },
}

/// `GET path` from `host:port` with an overall `timeout`.
pub fn get(host: &str, port: u16, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io {
        host: host.to_string(),
        port,
        path: path.to_string(),
        source,
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ))
        })?;
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(10));
    stream.set_read_timeout(Some(left)).map_err(io)?;
    stream.set_write_timeout(Some(left)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| HttpError::Malformed {
            host: host.to_string(),
            port,
            path: path.to_string(),
            head: status_line.chars().take(80).collect(),
        })?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// True when `GET path` answers 2xx within a second.
pub fn is_ok(host: &str, port: u16, path: &str) -> bool {
    matches!(get(host, port, path, Duration::from_secs(1)), Ok(r) if (200..300).contains(&r.status))
}

/// True when `GET path` answers 2xx at least once within `within` (tried every 200 ms).
///
/// For "is it still up?" checks on a loaded machine, where one slow answer is not an
/// outage; "is it down?" checks use [`is_ok`] once, as a stopped process refuses at once.
pub fn ok_within(host: &str, port: u16, path: &str, within: Duration) -> bool {
    let started = Instant::now();
    loop {
        if is_ok(host, port, path) {
            return true;
        }
        if started.elapsed() >= within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True when something accepts TCP connections on `host:port`.
pub fn port_open(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// A currently free TCP port on the loopback interface (bind to 0, read, release).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(reply: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request first: closing with unread data would send a reset.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            s.write_all(reply.as_bytes()).unwrap();
        });
        port
    }

    #[test]
    fn reads_status_and_body() {
        let port = serve_once("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n");
        let r = get("127.0.0.1", port, "/health", Duration::from_secs(2)).unwrap();
        assert_eq!(
            r,
            Response {
                status: 200,
                body: "ok\n".into()
            }
        );
        let port = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(!is_ok("127.0.0.1", port, "/health"));
    }

    #[test]
    fn rejects_non_http_and_closed_ports() {
        let port = serve_once("SSH-2.0-nope\r\n");
        assert!(matches!(
            get("127.0.0.1", port, "/", Duration::from_secs(2)),
            Err(HttpError::Malformed { .. })
        ));
        let closed = free_port().unwrap();
        assert!(get("127.0.0.1", closed, "/", Duration::from_secs(1)).is_err());
        assert!(!port_open("127.0.0.1", closed));
    }
}
