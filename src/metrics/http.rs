//! Just enough HTTP/1.x for a scraper: read one request head (bounded in size and time), route
//! it (`GET /metrics`, else 404 or 405), write one response and close. Keep-alive, bodies and
//! chunking are not spoken; the connection closes after each answer.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request head read, its closing blank line included; a longer one gets 431.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head; a slower one gets 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// What the metrics are served as.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (any query string is ignored).
    Metrics,
    /// Another path: 404.
    NotFound,
    /// `/metrics` with another method than GET: 405.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line: 400.
    BadRequest,
    /// The head did not end within [`MAX_REQUEST_HEAD`] bytes: 431.
    TooLarge,
    /// The head did not arrive within [`READ_TIMEOUT`]: 408.
    TimedOut,
}

/// Where the request line `line` goes.
pub fn route(line: &str) -> Route {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        (_, "/metrics") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// Reads the request head from `stream` and routes it.
pub async fn read_route(stream: &mut (impl AsyncRead + Unpin)) -> Route {
    match tokio::time::timeout(READ_TIMEOUT, read_head(stream)).await {
        Ok(Ok(head)) => {
            let text = String::from_utf8_lossy(&head);
            route(text.lines().next().unwrap_or_default())
        }
        Ok(Err(route)) => route,
        Err(_) => Route::TimedOut,
    }
}

/// The bytes up to the blank line ending the head, or the route for a head too large or
/// cut short.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, Route> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let read = stream.read(&mut buf).await.map_err(|_| Route::BadRequest)?;
        if read == 0 {
            return Err(Route::BadRequest);
        }
        head.extend_from_slice(&buf[..read]);
        let end = head.windows(4).position(|window| window == b"\r\n\r\n");
        // The bound holds wherever a read happens to end.
        if end.map_or(head.len(), |end| end + 4) > MAX_REQUEST_HEAD {
            return Err(Route::TooLarge);
        }
        if let Some(end) = end {
            head.truncate(end);
            return Ok(head);
        }
    }
}

/// Most bytes read and thrown away after an answer (see [`linger`]).
const LINGER_BYTES: usize = 1024 * 1024;
/// Longest wait for the client to close after an answer.
const LINGER_TIME: Duration = Duration::from_secs(1);

/// After the answer: reads and drops what the client still sends (the rest of an oversized
/// request), until it closes, within bounds. Closing with unread bytes would make the kernel
/// reset the connection, and a reset can destroy the answer before the client has read it.
pub async fn linger(stream: &mut (impl AsyncRead + Unpin)) {
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(read) => drained += read,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Writes the answer for `route` (`body` for [`Route::Metrics`]) and closes the writing side.
pub async fn respond(
    stream: &mut (impl AsyncWrite + Unpin),
    route: Route,
    body: impl FnOnce() -> String,
) -> std::io::Result<()> {
    let (status, extra, body) = match route {
        Route::Metrics => ("200 OK", "", body()),
        Route::NotFound => ("404 Not Found", "", "only /metrics is here\n".to_string()),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET\n".to_string(),
        ),
        Route::BadRequest => ("400 Bad Request", "", "not an HTTP/1 request\n".to_string()),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            "",
            format!("the request head is larger than {MAX_REQUEST_HEAD} bytes\n"),
        ),
        Route::TimedOut => ("408 Request Timeout", "", "too slow\n".to_string()),
    };
    let content_type = match route {
        Route::Metrics => CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route("GET /metrics HTTP/1.1"), Route::Metrics);
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route("GET /metrics/ HTTP/1.1"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route("HEAD /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route("GET /metrics"), Route::BadRequest);
        assert_eq!(route("GET /metrics HTTP/2"), Route::BadRequest);
        assert_eq!(route("GET  /metrics HTTP/1.1"), Route::BadRequest);
        assert_eq!(route(""), Route::BadRequest);
    }

    #[tokio::test]
    async fn a_head_is_read_up_to_its_blank_line_and_no_further() {
        let mut request: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nignored";
        assert_eq!(read_route(&mut request).await, Route::Metrics);
        let mut cut_short: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(read_route(&mut cut_short).await, Route::BadRequest);
    }

    /// A head of exactly the bound is read; one byte more is 431, however the reads split it.
    #[tokio::test]
    async fn the_bound_counts_every_byte_of_the_head() {
        let head_of = |total: usize| {
            let start = b"GET /metrics HTTP/1.1\r\nX-Filler: ";
            let mut head = start.to_vec();
            head.extend(std::iter::repeat_n(b'a', total - start.len() - 4));
            head.extend_from_slice(b"\r\n\r\n");
            head
        };
        let at_bound = head_of(MAX_REQUEST_HEAD);
        assert_eq!(read_route(&mut &at_bound[..]).await, Route::Metrics);
        for total in [MAX_REQUEST_HEAD + 1, MAX_REQUEST_HEAD + 1000] {
            let over = head_of(total);
            assert_eq!(read_route(&mut &over[..]).await, Route::TooLarge, "{total}");
        }
    }

    #[tokio::test]
    async fn a_head_too_large_is_refused_without_reading_it_all() {
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 4 * MAX_REQUEST_HEAD));
        let mut reader: &[u8] = &request;
        assert_eq!(read_route(&mut reader).await, Route::TooLarge);
        assert!(
            !reader.is_empty(),
            "reading stopped near the bound, {} bytes left unread",
            reader.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET /metr").await.expect("write");
        assert_eq!(read_route(&mut server).await, Route::TimedOut);
    }

    #[tokio::test]
    async fn an_answer_says_its_length_and_closes() {
        let mut written = Vec::new();
        respond(&mut written, Route::MethodNotAllowed, String::new)
            .await
            .expect("write");
        let text = String::from_utf8(written).expect("UTF-8");
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Allow: GET\r\n"), "{text}");
        assert!(text.contains("Content-Length: 9\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nonly GET\n"), "{text}");
    }
}
