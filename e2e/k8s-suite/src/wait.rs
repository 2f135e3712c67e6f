//! Bounded polling: every wait in the suite has a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Polls `probe` every 250 ms until it returns `Ok(Some(value))`, for at most `limit`. The last
/// `Ok(None)` or error is named in the failure, with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{what}: not after {} s ({last})", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
