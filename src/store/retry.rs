//! Retries of object-store requests: which failures are transient, how long to back off,
//! and the loop that retries, counts and turns the last failure into a [`StoreError`]
//! naming the URL. Sits inside the store: STORE (retry, cache) -> shard reader -> plan
//! -> ...
//!
//! object_store's own retry loop is switched off (`max_retries = 0`) and this one is
//! used instead, because its retries cannot be observed and every retry must be counted
//! (`editfeed_store_retries_total`). Transient: 5xx, 408, 429, timeouts, connection
//! errors and resets, bodies cut short. Permanent and never retried: 404 (not found),
//! 401 and 403 (denied), other 4xx, redirects (a wrong region), bad configuration.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{StoreError, StoreStats};

/// How a failed request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Worth retrying: the server or the network failed, not the request.
    Transient,
    /// The object does not exist (404).
    NotFound,
    /// The credentials are missing, wrong or lack permission (401, 403).
    Denied,
    /// A conditional request found the object unchanged (304).
    NotModified,
    /// Anything else that retrying cannot fix.
    Permanent,
}

/// Retry limits and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub initial: Duration,
    /// Longest backoff.
    pub max: Duration,
}

impl RetryPolicy {
    /// The backoff before retry `n` (1-based): exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that many streams failing together do not retry in
    /// lockstep, yet every wait is at least half the nominal one.
    pub fn backoff(&self, n: u32) -> Duration {
        let nominal = self
            .initial
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max);
        let half = nominal / 2;
        let jitter = half.mul_f64(unit_random());
        half + jitter
    }
}

/// A uniform value in [0, 1); jitter needs no reproducibility, only spread.
fn unit_random() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = crate::rng::mix64(nanos ^ crate::rng::mix64(COUNTER.fetch_add(1, Ordering::Relaxed)));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Classifies an object_store error.
pub fn classify(e: &object_store::Error) -> Class {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Class::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Class::Denied,
        E::NotModified { .. } => Class::NotModified,
        E::Generic { source, .. } => classify_chain(source.as_ref()),
        E::JoinError { .. } => Class::Transient,
        _ => Class::Permanent,
    }
}

/// Walks an error's sources for an HTTP status or a transport failure. object_store
/// keeps its request error type private, so the status is read from its message
/// ("... status code: 503 Service Unavailable ..."); the unit tests pin that format.
fn classify_chain(e: &(dyn std::error::Error + 'static)) -> Class {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if let Some(code) = status_in(&text) {
            return match code {
                404 => Class::NotFound,
                401 | 403 => Class::Denied,
                304 => Class::NotModified,
                408 | 429 => Class::Transient,
                c if c >= 500 => Class::Transient,
                _ => Class::Permanent,
            };
        }
        if text.contains("Received redirect") {
            return Class::Permanent;
        }
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return match h.kind() {
                K::Connect | K::Request | K::Timeout | K::Interrupted | K::Decode => {
                    Class::Transient
                }
                // Unknown transport failures (a reset mid-body surfaces here) are
                // retried too: the retry budget bounds the cost of being wrong.
                _ => Class::Transient,
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::BrokenPipe
                | K::TimedOut
                | K::UnexpectedEof
                | K::Interrupted => Class::Transient,
                K::NotFound => Class::NotFound,
                K::PermissionDenied => Class::Denied,
                _ => Class::Permanent,
            };
        }
        cur = err.source();
    }
    Class::Permanent
}

/// The HTTP status named in an object_store error message, if any.
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    let digits = text.get(at..at + 3)?;
    digits.parse().ok().filter(|c| (100..600).contains(c))
}

/// The store's own words from an error: S3's `<Code>` and `<Message>` when the body is
/// XML, else the error's message, shortened.
pub fn store_message(e: &object_store::Error) -> String {
    let text = e.to_string();
    let tag = |t: &str| -> Option<String> {
        let open = format!("<{t}>");
        let s = text.find(&open)? + open.len();
        let end = text[s..].find(&format!("</{t}>"))? + s;
        Some(text[s..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => {
            let mut t = text;
            if t.len() > 400 {
                let mut cut = 400;
                while !t.is_char_boundary(cut) {
                    cut -= 1;
                }
                t.truncate(cut);
                t.push_str("...");
            }
            t
        }
    }
}

/// Everything one retried request needs.
pub(crate) struct Retrier<'a> {
    pub policy: RetryPolicy,
    pub limit: &'a Semaphore,
    pub stats: &'a StoreStats,
}

impl Retrier<'_> {
    /// Runs `op` until it succeeds, fails permanently or the retries run out. Each
    /// attempt holds one of the store's concurrency permits, released during backoff.
    /// `Class::NotModified` is returned as `StoreError::NotModified` for the caller.
    pub async fn run<T, F, Fut>(&self, url: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, object_store::Error>>,
    {
        let mut attempt: u32 = 0;
        loop {
            let result = {
                let _permit = self
                    .limit
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.stats.request();
                op().await
            };
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let class = classify(&e);
            if class == Class::Transient && attempt < self.policy.max_retries {
                attempt += 1;
                self.stats.retry();
                let wait = self.policy.backoff(attempt);
                tracing::debug!(url, attempt, wait_ms = wait.as_millis() as u64, error = %e, "transient store error, retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let err = match class {
                Class::NotModified => return Err(StoreError::NotModified { url: url.into() }),
                Class::NotFound => StoreError::NotFound { url: url.into() },
                Class::Denied => StoreError::Denied {
                    url: url.into(),
                    message: store_message(&e),
                },
                Class::Transient => StoreError::Unavailable {
                    url: url.into(),
                    attempts: attempt + 1,
                    message: store_message(&e),
                },
                Class::Permanent => StoreError::Failed {
                    url: url.into(),
                    message: store_message(&e),
                },
            };
            self.stats.error(&err);
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Msg(String);
    impl std::fmt::Display for Msg {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Msg {}

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Msg(text.into())),
        }
    }

    #[test]
    fn statuses_and_transport_errors_are_classified() {
        let s = "Error performing GET http://h/b/k in 2ms - Server returned non-2xx status code: ";
        assert_eq!(
            classify(&generic(&format!("{s}503 Service Unavailable: "))),
            Class::Transient
        );
        assert_eq!(
            classify(&generic(&format!("{s}429 Too Many Requests: "))),
            Class::Transient
        );
        assert_eq!(
            classify(&generic(&format!("{s}403 Forbidden: "))),
            Class::Denied
        );
        assert_eq!(
            classify(&generic(&format!("{s}400 Bad Request: "))),
            Class::Permanent
        );
        assert_eq!(
            classify(&generic("Received redirect without LOCATION, this normally indicates an incorrectly configured region")),
            Class::Permanent
        );
        let reset = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert_eq!(classify(&reset), Class::Transient);
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: Box::new(Msg("x".into())),
        };
        assert_eq!(classify(&nf), Class::NotFound);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_retries: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b9 = p.backoff(9);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000));
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(4)).collect();
        assert!(spread.len() > 1, "jitter varies the waits");
    }

    #[test]
    fn the_store_message_is_extracted_from_s3_xml() {
        let e = generic("Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>The key does not exist</Message></Error>");
        assert_eq!(
            store_message(&e),
            "InvalidAccessKeyId: The key does not exist"
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_counted_permanent_ones_are_not() {
        let stats = StoreStats::default();
        let limit = Semaphore::new(1);
        let r = Retrier {
            policy: RetryPolicy {
                max_retries: 3,
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            limit: &limit,
            stats: &stats,
        };
        let mut calls = 0;
        let v = r
            .run("s3://b/k", || {
                calls += 1;
                let c = calls;
                async move {
                    if c < 3 {
                        Err(generic("status code: 502 Bad Gateway"))
                    } else {
                        Ok(7)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!((v, calls), (7, 3));
        assert_eq!(stats.snapshot().retries, 2);
        let mut calls = 0;
        let e = r
            .run("s3://b/missing", || {
                calls += 1;
                async { Err::<(), _>(generic("status code: 404 Not Found")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(e, StoreError::NotFound { .. }));
        assert!(e.to_string().contains("s3://b/missing"), "{e}");
        let e = r
            .run("s3://b/k", || async {
                Err::<(), _>(generic("status code: 500 oops"))
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("after 4 attempts"), "{e}");
        assert_eq!(stats.snapshot().retries, 5);
        assert_eq!(stats.snapshot().errors_unavailable, 1);
    }
}
