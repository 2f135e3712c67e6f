//! A minimal HTTP/1.1 client for the metrics and health listener (`/health`, `/version`,
//! `/metrics`): hand-written requests, so tests see exactly what a server sends, headers and
//! chunked bodies included.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{HarnessError, Result};

/// How long one HTTP exchange may take (a linearizable health read waits at most 7 s).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 answer: status code, headers (names lower-case) and body (dechunked).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpAnswer {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http_err(what: String) -> HarnessError {
    HarnessError::Cluster(what)
}

/// Sends `method path` to 127.0.0.1:`port` and reads the answer to the end.
pub async fn http_request(port: u16, method: &str, path: &str) -> Result<HttpAnswer> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| http_err(format!("{method} {path} on port {port} timed out")))?
        .map_err(|e| http_err(format!("{method} {path} on port {port} failed: {e}")))?;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Result<HttpAnswer> {
    let bad = || http_err(format!("not an HTTP answer: {raw:?}"));
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body).ok_or_else(bad)?
    } else {
        body.to_string()
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            break;
        }
        body.push_str(tail.get(..size)?);
        rest = tail.get(size + 2..)?;
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_lower_case_headers_and_dechunked_bodies() -> Result<()> {
        let answer = parse(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )?;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("content-type"), Some("text/plain"));
        assert_eq!(answer.body, "abcde");
        assert!(parse("garbage").is_err());
        Ok(())
    }
}
