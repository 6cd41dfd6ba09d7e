//! The producer of one trainer stream: walks the plan from the start step (every step,
//! or every `step_stride`-th for a loader worker's share of the rank), submits each
//! batch's samples to the worker pool, keeps at most `prefetch_batches` batches in
//! flight (and no more than the daemon's memory budget has room for: see
//! [`super::budget`]), and hands finished batches to the gRPC response in plan order
//! through a bounded channel, each with its budget charge. A failed send means the
//! client left: the producer stops, and dropping its pool queue discards the work it
//! had waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::budget::{BatchCharge, Charge, MemoryBudget, StreamBudget};
use super::collate::{collate, estimate_bytes, BatchHeader};
use super::pool::StreamQueue;
use super::prepare::{prepare, PrepareCtx, PrepareError, Prepared};
use crate::plan::{Plan, PlanError, StepPlan};
use crate::rng::{Purpose, Rng};
use crate::transport::proto::v1::Batch;

/// What one stream produces.
pub struct StreamParams {
    /// Per-sample work context.
    pub ctx: PrepareCtx,
    /// The stream's plan.
    pub plan: Arc<Plan>,
    /// This rank.
    pub rank: u32,
    /// Ranks in the job.
    pub world_size: u32,
    /// First step to produce.
    pub start_step: u64,
    /// Distance between the steps produced: `start_step`, `start_step + step_stride`,
    /// ... (1: every step; more when loader workers share a rank's stream).
    pub step_stride: u64,
    /// No step at or after this one is produced (`None`: endless).
    pub end_step: Option<u64>,
    /// Output size when no buckets are given.
    pub size: (u32, u32),
    /// Aspect-ratio buckets; one is drawn per global step.
    pub buckets: Vec<(u32, u32)>,
    /// Batches prepared ahead of the client.
    pub prefetch_batches: usize,
    /// Tensor bytes of the stream's largest batch, which sizes its base charge in the
    /// memory budget.
    pub largest_batch: u64,
    /// Large tensors go to the client as shared-memory files (when it shares the
    /// daemon's folder).
    pub shared: Option<crate::transport::shared_memory::StreamFiles>,
}

/// What the producer hands the transport: a batch or the error that ends the stream,
/// with the batch's budget charge, which the transport keeps until gRPC asks for the
/// next message (by then this one is encoded and on its way).
pub struct Outgoing {
    /// The batch, or why the stream ends.
    pub item: Result<Batch, StreamError>,
    /// The batch's charge to the memory budget.
    pub charge: Option<BatchCharge>,
    /// The stream's base charge, with its first item: kept until the stream ends.
    pub base: Option<Charge>,
}

impl From<StreamError> for Outgoing {
    fn from(e: StreamError) -> Outgoing {
        Outgoing {
            item: Err(e),
            charge: None,
            base: None,
        }
    }
}

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The plan refused a step.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A sample and its replacements all failed.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// A worker died while preparing a batch.
    #[error("step {step}: a worker failed while preparing the batch")]
    WorkerLost { step: u64 },
    /// The daemon is shutting down and its drain period is over.
    #[error("the daemon is shutting down; resume from the last cursor on another daemon")]
    ShuttingDown,
}

/// A stream's counters, read by the Admin service's `Stats`.
#[derive(Debug, Default)]
pub struct StreamProgress {
    /// Batches ready and handed to the response channel (or waiting to be).
    pub prepared: AtomicU64,
    /// Batches the transport took from the channel.
    pub sent: AtomicU64,
    /// The step of the last batch the transport took.
    pub step: AtomicU64,
    /// The producer stopped for the daemon's shutdown while the channel was full, so
    /// the ShuttingDown error is still owed: the transport sends it after the batches
    /// already queued.
    pub shutdown_owed: AtomicBool,
}

impl StreamProgress {
    /// The ShuttingDown error the producer could not queue, once, if it is owed.
    pub fn owed_shutdown(&self) -> Option<StreamError> {
        self.shutdown_owed
            .swap(false, Ordering::AcqRel)
            .then_some(StreamError::ShuttingDown)
    }

    /// Records a batch taken by the transport.
    pub fn taken(&self, step: u64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.step.store(step, Ordering::Relaxed);
    }

    /// Batches prepared but not taken yet: how far the server is ahead of its client.
    pub fn ahead(&self) -> u64 {
        self.prepared
            .load(Ordering::Relaxed)
            .saturating_sub(self.sent.load(Ordering::Relaxed))
    }
}

/// The output size of a global step: the fixed size, or a bucket drawn from the seed and
/// the step (the same on every rank, so the ranks' slices stay one global batch).
pub fn step_size(params: &StreamParams, step: u64) -> (u32, u32) {
    if params.buckets.is_empty() {
        return params.size;
    }
    let mut rng = Rng::keyed(params.ctx.seed, 0, step, 0, Purpose::Bucket);
    params.buckets[rng.below(params.buckets.len() as u64) as usize]
}

/// A batch on its way: being prepared by the pool, or refused by the plan.
enum Inflight {
    Pending(
        u64,
        oneshot::Receiver<Result<Batch, PrepareError>>,
        BatchCharge,
    ),
    Failed(StreamError),
}

/// Ends a stream for the daemon's shutdown: queues the ShuttingDown error without
/// waiting (a client that stopped reading must not hold the shutdown), or, when the
/// channel is full, leaves it owed in `progress` for the transport to send after the
/// queued batches.
fn shut_down(tx: &mpsc::Sender<Outgoing>, progress: &StreamProgress) {
    if tx.try_send(StreamError::ShuttingDown.into()).is_err() {
        progress.shutdown_owed.store(true, Ordering::Release);
    }
}

/// Runs the producer until the stream ends, the client leaves or an error occurs.
pub async fn produce(
    params: StreamParams,
    queue: StreamQueue,
    tx: mpsc::Sender<Outgoing>,
    budget: Arc<MemoryBudget>,
    stop: tokio::sync::watch::Receiver<bool>,
    job: String,
    progress: Arc<StreamProgress>,
) {
    let params = Arc::new(params);
    // Resolves when the daemon's drain period is over.
    let stopped = |stop: &tokio::sync::watch::Receiver<bool>| {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let mut share = tokio::select! {
        s = StreamBudget::admit(budget, params.largest_batch) => s,
        _ = tx.closed() => return,
        _ = stopped(&stop) => return shut_down(&tx, &progress),
    };
    let mut inflight: VecDeque<Inflight> = VecDeque::new();
    let mut next = Some(params.start_step);
    // A step planned whose charge the budget had no room for yet.
    let mut planned: Option<(u64, StepPlan)> = None;
    loop {
        while let Some(step) = next.filter(|_| inflight.len() < params.prefetch_batches.max(1)) {
            if params.end_step.is_some_and(|e| step >= e) {
                next = None;
                break;
            }
            let batch = match planned.take() {
                Some((s, batch)) if s == step => batch,
                _ => match params.plan.rank_batch(step, params.rank, params.world_size) {
                    Ok(batch) => batch,
                    Err(e) => {
                        // The batches before the refused step still go out first.
                        inflight.push_back(Inflight::Failed(e.into()));
                        next = None;
                        break;
                    }
                },
            };
            let bytes = estimate_bytes(
                params.ctx.slots(batch.subset),
                batch.samples.len() as u64 + batch.padding as u64,
                step_size(&params, step),
            );
            // With batches in flight, deliver them rather than wait for room; with
            // none, wait for the stream's base slot.
            let charge = match share.try_batch(bytes) {
                Some(c) => c,
                None if inflight.is_empty() => tokio::select! {
                    c = share.batch() => c,
                    _ = tx.closed() => return,
                    _ = stopped(&stop) => return shut_down(&tx, &progress),
                },
                None => {
                    planned = Some((step, batch));
                    break;
                }
            };
            let rx = tokio::select! {
                rx = submit_batch(&params, &queue, step, batch) => rx,
                _ = tx.closed() => return,
                _ = stopped(&stop) => return shut_down(&tx, &progress),
            };
            inflight.push_back(Inflight::Pending(step, rx, charge));
            next = step.checked_add(params.step_stride.max(1));
        }
        let (item, charge) = match inflight.pop_front() {
            None => return,
            Some(Inflight::Failed(e)) => (Err(e), None),
            Some(Inflight::Pending(step, rx, charge)) => {
                let result = tokio::select! {
                    r = rx => r,
                    _ = tx.closed() => return,
                    _ = stopped(&stop) => return shut_down(&tx, &progress),
                };
                let item = match result {
                    Ok(Ok(batch)) => Ok(batch),
                    Ok(Err(e)) => Err(StreamError::Prepare(e)),
                    Err(_) => Err(StreamError::WorkerLost { step }),
                };
                (item, Some(charge))
            }
        };
        let last = item.is_err();
        if let Ok(b) = &item {
            let bytes: u64 = b
                .tensors
                .iter()
                .map(crate::transport::wire::tensor_bytes)
                .sum();
            let subset =
                crate::dataset::Subset::from_name(&b.subset).map_or("unknown", |s| s.name());
            crate::metrics::batch_sent(subset, bytes, &job);
            progress.prepared.fetch_add(1, Ordering::Relaxed);
        }
        let sending = Instant::now();
        let sent = tokio::select! {
            r = tx.send(Outgoing { item, charge, base: share.take_base() }) => r.is_ok(),
            _ = stopped(&stop) => {
                shut_down(&tx, &progress);
                false
            }
        };
        if !sent || last {
            return;
        }
        super::timing::record(super::timing::Stage::Send, sending);
        crate::metrics::stage_seconds("send", sending.elapsed().as_secs_f64());
    }
}

struct BatchState {
    header: BatchHeader,
    slots: Mutex<Vec<Option<Prepared>>>,
    remaining: AtomicUsize,
    error: Mutex<Option<PrepareError>>,
    done: Mutex<Option<oneshot::Sender<Result<Batch, PrepareError>>>>,
    started: Instant,
}

impl BatchState {
    /// Records sample `index`'s result (`None`: a batch of padding only, which has no
    /// sample to wait for) and collates the batch after the last one.
    fn finish_one(
        &self,
        sample: Option<(usize, Result<Prepared, PrepareError>)>,
        shared: Option<&crate::transport::shared_memory::StreamFiles>,
    ) {
        match sample {
            Some((index, Ok(p))) => self.slots.lock().expect("slots lock")[index] = Some(p),
            Some((_, Err(e))) => {
                self.error.lock().expect("error lock").get_or_insert(e);
            }
            None => {}
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last sample of the batch: collate here, on this worker.
        let Some(done) = self.done.lock().expect("done lock").take() else {
            return;
        };
        if let Some(e) = self.error.lock().expect("error lock").take() {
            let _ = done.send(Err(e));
            return;
        }
        let samples: Vec<Prepared> = std::mem::take(&mut *self.slots.lock().expect("slots lock"))
            .into_iter()
            .flatten()
            .collect();
        let read: f64 = samples.iter().map(|s| s.read_seconds).sum();
        let augment: f64 = samples.iter().map(|s| s.augment_seconds).sum();
        let collating = Instant::now();
        let batch = collate(&self.header, samples, shared);
        super::timing::record(super::timing::Stage::Collate, collating);
        crate::metrics::stage_seconds("read", read);
        crate::metrics::stage_seconds("decode_augment", augment);
        crate::metrics::stage_seconds("collate", collating.elapsed().as_secs_f64());
        crate::metrics::batch_prepared(self.started.elapsed().as_secs_f64());
        let _ = done.send(Ok(batch));
    }

    fn abandoned(&self) -> bool {
        self.done
            .lock()
            .expect("done lock")
            .as_ref()
            .is_none_or(|d| d.is_closed())
    }
}

/// Hands the samples of `plan`, the rank's share of `step`, to the worker pool.
async fn submit_batch(
    params: &Arc<StreamParams>,
    queue: &StreamQueue,
    step: u64,
    plan: StepPlan,
) -> oneshot::Receiver<Result<Batch, PrepareError>> {
    let target = step_size(params, step);
    let (tx, rx) = oneshot::channel();
    let n = plan.samples.len();
    let state = Arc::new(BatchState {
        header: BatchHeader {
            step,
            rank: params.rank,
            world_size: params.world_size,
            subset: plan.subset,
            cursor: params.plan.cursor(step + 1).encode(),
            dataset_version: params.plan.dataset_version().to_string(),
            target,
            kind: params.ctx.kind,
            slots: params.ctx.slots(plan.subset),
            padding: plan.padding as usize,
            valid_mask: params.plan.is_eval(),
            multi_turn_steps: params.ctx.multi_turn_steps,
        },
        slots: Mutex::new((0..n).map(|_| None).collect()),
        remaining: AtomicUsize::new(n.max(1)),
        error: Mutex::new(None),
        done: Mutex::new(Some(tx)),
        started: Instant::now(),
    });
    if n == 0 {
        // A rank whose share of the last step of a pass is all padding: the batch is
        // still collated on a worker, not here on the runtime.
        let params = params.clone();
        queue
            .submit(Box::new(move || {
                state.finish_one(None, params.shared.as_ref());
            }))
            .await;
        return rx;
    }
    for (i, sref) in plan.samples.into_iter().enumerate() {
        let state = state.clone();
        let params = params.clone();
        queue
            .submit(Box::new(move || {
                if state.abandoned() {
                    return;
                }
                let result = prepare(&params.ctx, &sref, target);
                state.finish_one(Some((i, result)), params.shared.as_ref());
            }))
            .await;
    }
    rx
}
