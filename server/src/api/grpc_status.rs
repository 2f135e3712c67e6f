//! Rewrites the status tonic gives a message above the receive limit into the one etcd's gRPC
//! server (grpc-go) gives, because clients act on the code: grpc-go answers ResourceExhausted
//! "grpc: received message larger than max (N vs. M)", tonic OutOfRange with its own wording,
//! and OutOfRange is the code etcd clients read as "revision compacted or in the future".

use http::{HeaderValue, Response};

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";
const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";

/// The numbers in tonic's message: (found, limit).
fn parse_tonic_message(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// Rewrites an oversize-message status in the headers of a trailers-only response.
pub fn etcd_oversize_status<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers();
    let is_out_of_range = headers
        .get(GRPC_STATUS)
        .is_some_and(|v| v.as_bytes() == b"11");
    let sizes = headers
        .get(GRPC_MESSAGE)
        .and_then(|v| v.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .and_then(|m| parse_tonic_message(&m));
    if let (true, Some((found, limit))) = (is_out_of_range, sizes) {
        let message = format!("grpc: received message larger than max ({found} vs. {limit})");
        if let Ok(value) = HeaderValue::from_str(&message) {
            let headers = response.headers_mut();
            headers.insert(GRPC_STATUS, HeaderValue::from_static("8"));
            headers.insert(GRPC_MESSAGE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_oversize_status_becomes_grpc_go_resource_exhausted() {
        let response = Response::builder()
            .header(GRPC_STATUS, "11")
            .header(
                GRPC_MESSAGE,
                "Error, decoded message length too large: found 655370 bytes, the limit is: 589824 bytes",
            )
            .body(())
            .unwrap_or_default();
        let rewritten = etcd_oversize_status(response);
        assert_eq!(rewritten.headers()[GRPC_STATUS], "8");
        assert_eq!(
            rewritten.headers()[GRPC_MESSAGE],
            "grpc: received message larger than max (655370 vs. 589824)"
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        let response = Response::builder()
            .header(GRPC_STATUS, "11")
            .header(
                GRPC_MESSAGE,
                "etcdserver: mvcc: required revision has been compacted",
            )
            .body(())
            .unwrap_or_default();
        let kept = etcd_oversize_status(response);
        assert_eq!(kept.headers()[GRPC_STATUS], "11");
    }
}
