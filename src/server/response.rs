//! Wrappers around a stream's response: its budget charges held until gRPC asks for
//! the next message, and the client's deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_stream::Stream;
use tonic::Status;

use crate::pipeline::budget::{BatchCharge, Charge};
use crate::pipeline::stream::{Outgoing, StreamError};
use crate::transport::proto::v1 as pb;

/// Yields the producer's items and keeps each batch's budget charge until the next
/// poll: gRPC polls for the next message once this one is encoded and handed to
/// HTTP/2, so the charge covers the batch until then. The stream's base charge is kept
/// until the response is dropped.
pub struct HoldCharge<S> {
    inner: S,
    held: Option<BatchCharge>,
    base: Option<Charge>,
}

impl<S> HoldCharge<S> {
    pub fn new(inner: S) -> Self {
        HoldCharge {
            inner,
            held: None,
            base: None,
        }
    }
}

impl<S: Stream<Item = Outgoing> + Unpin> Stream for HoldCharge<S> {
    type Item = Result<pb::Batch, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.held = None;
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(out)) => {
                self.held = out.charge;
                if out.base.is_some() {
                    self.base = out.base;
                }
                Poll::Ready(Some(out.item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The deadline a client set with the `grpc-timeout` header (`<digits><unit>`, units
/// H, M, S, m, u, n), if any.
pub fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Ends a stream with DEADLINE_EXCEEDED when its deadline passes; dropping the inner
/// stream then stops its producer.
pub struct UntilDeadline<S> {
    inner: Option<S>,
    timer: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
}

impl<S> UntilDeadline<S> {
    pub fn new(inner: S, after: Duration) -> Self {
        UntilDeadline {
            inner: Some(inner),
            timer: Box::pin(tokio::time::sleep(after)),
            after,
        }
    }
}

impl<S: Stream<Item = Result<pb::Batch, Status>> + Unpin> Stream for UntilDeadline<S> {
    type Item = Result<pb::Batch, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(item) = Pin::new(inner).poll_next(cx) {
            if item.is_none() {
                self.inner = None;
            }
            return Poll::Ready(item);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.inner = None;
            let after = self.after;
            return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                "the request's deadline ({after:?}) passed; resume from the last cursor"
            )))));
        }
        Poll::Pending
    }
}
