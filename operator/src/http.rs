//! The operator's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process runs)
//! and `/readyz` (this replica leads and its controller runs, or stands by ready to).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Whether this replica is ready (set once its watches started or it waits as a standby).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the replica ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn route(path: &str, metrics: &Metrics, readiness: &Readiness) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" | "/livez" => respond(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if readiness.is_ready() => {
            respond(StatusCode::OK, "text/plain", "ok\n".to_owned())
        }
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".to_owned(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

/// Serves the endpoint on `address` until the process ends.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<crate::reconcile::Context>,
    readiness: Readiness,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    loop {
        let (stream, _) = listener.accept().await?;
        let context = metrics.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = route(request.uri().path(), &context.metrics, &readiness);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_fails_until_ready_and_metrics_are_served() {
        let metrics = Metrics::default();
        let readiness = Readiness::default();
        assert_eq!(
            route("/readyz", &metrics, &readiness).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_ready();
        assert_eq!(
            route("/readyz", &metrics, &readiness).status(),
            StatusCode::OK
        );
        assert_eq!(
            route("/healthz", &metrics, &readiness).status(),
            StatusCode::OK
        );
        assert_eq!(
            route("/metrics", &metrics, &readiness).status(),
            StatusCode::OK
        );
        assert_eq!(
            route("/nope", &metrics, &readiness).status(),
            StatusCode::NOT_FOUND
        );
    }
}
