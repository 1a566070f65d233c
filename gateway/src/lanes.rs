//! Unary submissions carried on a few long-lived upstream `SubmitStream`s.
//!
//! A REST or unary gRPC submission sent to svc-verify as its own unary call costs a whole
//! HTTP/2 request on each side: HEADERS in both directions, trailers, a task per stream in
//! svc-verify and a call through the channel's buffer task in the gateway. A `SubmitStream`
//! item costs one DATA frame each way. On the 2-core machine this runs on, with the client,
//! the gateway and svc-verify sharing the cores, that difference decides REST throughput
//! (docs/BENCHMARKS.md has the figures for both paths).
//!
//! So each replica gets up to [`Lanes`]'s `n` *lanes*: upstream `SubmitStream` calls shared by
//! every caller. A submission takes the next lane in turn, is given the lane's next item index
//! and waits for the answer with that index (svc-verify answers a stream's items in order,
//! but matching by index does not rely on it).
//!
//! - A lane opens on first use without waiting: the upstream call is made by the lane's task,
//!   and items queue in its channel meanwhile.
//! - When the upstream stream fails or ends, the lane is broken and the next submission opens a
//!   fresh lane. Every item still waiting on it is sent once more, on a fresh lane: its
//!   replica may have closed the stream before reading it (a restart). An item it did decide
//!   is then answered as the duplicate of that decision, the answer a client's own retry
//!   would get. If the second lane is lost too, the item fails as a transport failure, which
//!   the gateway's routing treats exactly like a unary call whose connection broke (fail over
//!   to the next replica, else 503 `upstream_unavailable`).
//! - Items larger than [`LANE_MAX_ITEM`] go as unary calls: an error of the stream as a whole
//!   (the upstream's decoding limit, say) would otherwise break the lane for every caller on it.
//! - Dropping the [`Lanes`] ends the upstream streams: svc-verify answers what it has read and
//!   closes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flk_proto::ApiError;
use flk_proto::v1::{self, submit_stream_response};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

use crate::UpstreamClient;

/// Largest encoded request sent on a lane; larger ones go as unary calls. PCS bodies are about
/// a kilobyte.
pub(crate) const LANE_MAX_ITEM: usize = 256 * 1024;

/// What a lane answers an item.
type Answer = Result<v1::Outcome, Failure>;

enum Failure {
    /// svc-verify answered the item with an error.
    Answered(Status),
    /// The lane broke before the item's answer came.
    Lost(String),
}

/// The lanes of one replica.
pub(crate) struct Lanes {
    client: UpstreamClient,
    slots: Box<[Mutex<Option<Lane>>]>,
    turn: AtomicUsize,
}

/// One upstream `SubmitStream`: the sending side, and the answers owed on it (shared with the
/// task that reads the upstream answers).
struct Lane {
    items: mpsc::UnboundedSender<v1::SubmitRequest>,
    owed: Arc<Mutex<Owed>>,
}

#[derive(Default)]
struct Owed {
    next_index: u64,
    replies: HashMap<u64, oneshot::Sender<Answer>>,
    /// Set once the upstream stream has failed or ended; no item is accepted after.
    broken: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections cannot panic half-way; a poisoned lock still holds valid state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The status of an item whose lane broke before it was answered: no service answered it, so
/// it reads as a transport failure (no error code in its metadata).
fn lane_lost(why: &str) -> Status {
    Status::unavailable(format!("submission stream to svc-verify lost: {why}"))
}

impl Lanes {
    /// `n` lanes (at least 1) towards the replica behind `client`.
    pub(crate) fn new(client: UpstreamClient, n: usize) -> Lanes {
        Lanes {
            client,
            slots: (0..n.max(1)).map(|_| Mutex::new(None)).collect(),
            turn: AtomicUsize::new(0),
        }
    }

    /// Submits `req` on the next lane and waits for its answer; sends it once more if the lane
    /// is lost first.
    pub(crate) async fn submit(&self, req: v1::SubmitRequest) -> Result<v1::Outcome, Status> {
        let mut why = String::new();
        for item in [req.clone(), req] {
            let slot = self.turn.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            let Some(answer) = self.enqueue(slot, item) else {
                why = "closed".into();
                continue;
            };
            match answer.await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(Failure::Answered(status))) => return Err(status),
                Ok(Err(Failure::Lost(w))) => why = w,
                // The lane's task is gone without answering (runtime shutdown).
                Err(_) => why = "closed".into(),
            }
        }
        Err(lane_lost(&why))
    }

    /// Queues `req` on lane `slot` (opening it if it is not open) and returns where its answer
    /// will arrive; `None` if the lane broke just now.
    fn enqueue(&self, slot: usize, req: v1::SubmitRequest) -> Option<oneshot::Receiver<Answer>> {
        let mut slot = lock(&self.slots[slot]);
        let lane = match slot.take() {
            Some(lane) if !lock(&lane.owed).broken => slot.insert(lane),
            _ => slot.insert(self.open()),
        };
        let (reply, answer) = oneshot::channel();
        let mut owed = lock(&lane.owed);
        if owed.broken {
            return None;
        }
        let index = owed.next_index;
        // Sent under the lock, so the channel's order is the order of the indices.
        if lane.items.send(req).is_err() {
            owed.broken = true;
            return None;
        }
        owed.next_index += 1;
        owed.replies.insert(index, reply);
        Some(answer)
    }

    /// A new lane, its upstream call made by a task of its own.
    fn open(&self) -> Lane {
        let (items, rx) = mpsc::unbounded_channel();
        let owed = Arc::new(Mutex::new(Owed::default()));
        tokio::spawn(drive(
            self.client.clone(),
            UnboundedReceiverStream::new(rx),
            owed.clone(),
        ));
        Lane { items, owed }
    }
}

/// Whether `req` may go on a lane (see [`LANE_MAX_ITEM`]).
pub(crate) fn fits(req: &v1::SubmitRequest) -> bool {
    req.encoded_len() <= LANE_MAX_ITEM
}

/// Makes the lane's upstream call and hands each answer to its waiter; when the stream fails
/// or ends, answers every waiter with a transport failure and marks the lane broken.
async fn drive(
    mut client: UpstreamClient,
    items: UnboundedReceiverStream<v1::SubmitRequest>,
    owed: Arc<Mutex<Owed>>,
) {
    let why = match client.submit_stream(items).await {
        Err(status) => status.message().to_owned(),
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(a)) => deliver(&owed, a),
                    Ok(None) => break "svc-verify ended the stream".to_owned(),
                    Err(status) => break status.message().to_owned(),
                }
            }
        }
    };
    let waiting = {
        let mut owed = lock(&owed);
        owed.broken = true;
        std::mem::take(&mut owed.replies)
    };
    if !waiting.is_empty() {
        tracing::warn!(items = waiting.len(), error = %why, "submission stream to svc-verify lost; resending its items");
    }
    for reply in waiting.into_values() {
        let _ = reply.send(Err(Failure::Lost(why.clone())));
    }
}

fn deliver(owed: &Mutex<Owed>, answer: v1::SubmitStreamResponse) {
    let Some(reply) = lock(owed).replies.remove(&answer.index) else {
        tracing::warn!(
            index = answer.index,
            "svc-verify answered an unknown stream item"
        );
        return;
    };
    let result = match answer.result {
        Some(submit_stream_response::Result::Outcome(o)) => Ok(o),
        Some(submit_stream_response::Result::Error(e)) => {
            Err(Failure::Answered(Status::from(ApiError::from(e))))
        }
        None => Err(Failure::Answered(Status::from(ApiError::new(
            flk_proto::ErrorKind::Internal,
            "bad_upstream_answer",
            "stream answer without a result",
        )))),
    };
    // The waiter may be gone (its request timed out); the item was still decided.
    let _ = reply.send(result);
}
