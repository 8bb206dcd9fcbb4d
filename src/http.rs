//! HTTP/1.1 for the plain endpoints the toolkit serves on the server core
//! (`nap-time`, the live views): one request read whole, its head bounded
//! by [`MAX_HEAD`] and its body by the caller's limit; bodies framed by
//! `Content-Length` only (two that differ, or any `Transfer-Encoding`, are
//! refused as RFC 9112 asks, so nothing in front of us can be smuggled
//! past); replies written whole with their length. Heads are parsed by
//! `httparse`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::error::{Detail, Error, Result, Stage};
use crate::server::Session;

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;

/// A request, as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... as sent.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// What follows `?` in the target, if anything.
    pub query: Option<String>,
    /// The `Host` header.
    pub host: Option<String>,
    /// Whether the client keeps the connection open after the reply.
    pub keep_alive: bool,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

/// Reads one request: the head up to its empty line, at most [`MAX_HEAD`]
/// bytes, then a body of `Content-Length` bytes, at most `max_body`.
/// `Error::Truncated` if the stream ends first.
pub fn read_request<R: BufRead>(r: &mut R, max_body: usize) -> Result<Request> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r
            .by_ref()
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(Error::Truncated);
        }
        if head.len() > MAX_HEAD {
            return Err(Error::protocol(
                Stage::Request,
                Detail::OutOfRange {
                    what: "request head size",
                    value: head.len() as u64,
                    limit: MAX_HEAD as u64,
                },
            ));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::Truncated),
        Err(e) => {
            return Err(Error::invalid(
                Stage::Request,
                format!("bad HTTP request: {e}"),
            ));
        }
    }
    let all = |name: &str| {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect::<Vec<_>>()
    };
    if !all("transfer-encoding").is_empty() {
        return Err(Error::invalid(
            Stage::Request,
            "Transfer-Encoding is not supported; send a Content-Length",
        ));
    }
    let len = content_length(&all("content-length"), max_body)?;
    let connection = all("connection")
        .first()
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    let keep_alive = match parsed.version {
        Some(1) => connection != "close",
        _ => connection == "keep-alive",
    };
    let target = parsed.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let req = Request {
        method: parsed.method.unwrap_or("").to_string(),
        path,
        query,
        host: all("host").into_iter().next(),
        keep_alive,
        body: Vec::new(),
    };
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Request { body, ..req })
}

/// The body length the `Content-Length` headers (each possibly a
/// comma-separated list) agree on: 0 without one; an error if one is not a
/// number, if they differ, or if it is over `max`.
fn content_length(values: &[String], max: usize) -> Result<usize> {
    let mut len: Option<usize> = None;
    for v in values.iter().flat_map(|v| v.split(',')) {
        let v = v.trim();
        let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| Error::invalid(Stage::Request, format!("bad Content-Length {v:?}")))?;
        if len.is_some_and(|l| l != n) {
            return Err(Error::invalid(
                Stage::Request,
                "Content-Length headers that differ",
            ));
        }
        len = Some(n);
    }
    let len = len.unwrap_or(0);
    if len > max {
        return Err(Error::protocol(
            Stage::Request,
            Detail::OutOfRange {
                what: "body length",
                value: len as u64,
                limit: max as u64,
            },
        ));
    }
    Ok(len)
}

/// What a request handler did.
pub enum Handled {
    /// Answered with this reply; the connection goes on if the client
    /// keeps it alive.
    Reply(Reply),
    /// Answered on the socket itself (an event stream); the connection ends.
    Done,
}

/// Serves the requests of one connection on the server core: idle until a
/// request begins, read whole under the request deadline (a body up to
/// `max_body`), handled, answered (head only for `HEAD`). A request that
/// cannot be read gets a 400 and ends the connection.
pub fn serve(
    session: &Session,
    max_body: usize,
    mut handle: impl FnMut(&Request) -> Result<Handled>,
) -> Result<()> {
    let mut r = BufReader::new(session.stream());
    loop {
        if !session.await_request(&mut r)? {
            return Ok(());
        }
        let req = match read_request(&mut r, max_body) {
            Ok(req) => req,
            Err(e) => {
                session.busy();
                if !e.is_disconnect() {
                    let reply = Reply::text("400 Bad Request", format!("{e}\n"));
                    let _ = reply.write(session.stream(), false, false);
                }
                return Err(e);
            }
        };
        session.busy();
        match handle(&req)? {
            Handled::Reply(reply) => {
                reply.write(session.stream(), req.keep_alive, req.method == "HEAD")?;
                if !req.keep_alive {
                    return Ok(());
                }
            }
            Handled::Done => return Ok(()),
        }
    }
}

/// A whole reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `200 OK`, `404 Not Found`, ...
    pub status: &'static str,
    pub content_type: &'static str,
    /// Further header lines, each ending in `\r\n`.
    pub headers: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with `body` as `content_type`.
    pub fn new(
        status: &'static str,
        content_type: &'static str,
        body: impl Into<Vec<u8>>,
    ) -> Reply {
        Reply {
            status,
            content_type,
            headers: "",
            body: body.into(),
        }
    }

    /// Plain text.
    pub fn text(status: &'static str, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// Writes the reply (only its head for a `HEAD` request) to `stream`,
    /// saying whether the connection stays open.
    pub fn write(&self, stream: &TcpStream, keep_alive: bool, head_only: bool) -> Result<()> {
        let head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\n{}Connection: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.headers,
            if keep_alive { "keep-alive" } else { "close" }
        );
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        let mut s = stream;
        s.write_all(&out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request> {
        crate::fuzzing::seed("http_request", bytes);
        read_request(&mut &bytes[..], 1024)
    }

    #[test]
    fn a_request_is_read_whole_with_its_query_and_body() {
        let r = read(b"POST /x?wsdl HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\n\r\nabcTAIL")
            .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/x");
        assert_eq!(r.query.as_deref(), Some("wsdl"));
        assert_eq!(r.host.as_deref(), Some("h:1"));
        assert!(r.keep_alive);
        assert_eq!(r.body, b"abc");
        // Exactly one request is consumed: a pipelined next one stays.
        let mut rest = &b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET"[..];
        assert_eq!(read_request(&mut rest, 1024).unwrap().body, b"body");
        assert_eq!(rest, b"GET");
        let r = read(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        assert!(r.body.is_empty());
        let r = read(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn bodies_are_framed_by_one_content_length_only() {
        // The same length twice (or as a list) is one length.
        let r =
            read(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!(r.body, b"ok");
        assert!(read(b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nok").is_ok());
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokokok"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 2, 3\r\n\r\nokok",
            b"POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\nok",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
        ] {
            let e = read(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(
                matches!(
                    e,
                    Error::Protocol {
                        stage: Stage::Request,
                        ..
                    }
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn heads_are_bounded_and_cut_requests_are_truncated() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            read(&big),
            Err(Error::Protocol {
                detail: Detail::OutOfRange { .. },
                ..
            })
        ));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost: h"),
            Err(Error::Truncated)
        ));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"),
            Err(Error::Truncated)
        ));
        assert!(matches!(
            read(b"\x00\x01 garbage\r\n\r\n"),
            Err(Error::Protocol { .. })
        ));
    }
}
