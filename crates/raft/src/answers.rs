//! Answers to the callers waiting on a raft thread (applied proposals,
//! released reads), handed off the thread in one batch per round.
//!
//! Answering a waiting async task wakes it. Woken from a thread outside the
//! async runtime, every such wake queues the task from afar and may unpark
//! a runtime thread with a syscall: profiled under pipelined SETs, those
//! wakes took a quarter of the raft thread's time. So the raft thread only
//! collects its answers and passes the round's batch to a courier task on
//! the runtime (one wake per round), which sends them; a wake from inside
//! the runtime is a local queue push.
//!
//! Without a runtime (the engine driven by plain threads) the courier is a
//! thread of its own. Answers still in the courier's hands when the
//! runtime stops are dropped, which callers see as the engine stopping.

use tokio::sync::oneshot;

use crate::error::ProposeError;
use crate::reads::ReadPoint;

/// One caller's answer.
pub(crate) enum Answer<O> {
    Proposal(
        oneshot::Sender<Result<O, ProposeError>>,
        Result<O, ProposeError>,
    ),
    Read(oneshot::Sender<Result<ReadPoint, ProposeError>>, ReadPoint),
}

impl<O> Answer<O> {
    fn deliver(self) {
        // A caller that gave up has dropped its receiver: nothing to do.
        match self {
            Answer::Proposal(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Read(reply, point) => {
                let _ = reply.send(Ok(point));
            }
        }
    }
}

/// The raft threads' way to the courier.
pub(crate) struct Courier<O> {
    batches: flume::Sender<Vec<Answer<O>>>,
}

impl<O> Clone for Courier<O> {
    fn clone(&self) -> Self {
        Courier {
            batches: self.batches.clone(),
        }
    }
}

impl<O: Send + 'static> Courier<O> {
    /// Starts the courier: a task on the current async runtime, or a
    /// thread when there is none. It ends once every `Courier` is dropped.
    pub(crate) fn start() -> std::io::Result<Courier<O>> {
        // Unbounded: a batch is one round's answers, and each of them is
        // owed to a caller that is already waiting (its memory is spent);
        // a bound could only make the raft thread wait on the runtime.
        let (batches, received) = flume::unbounded::<Vec<Answer<O>>>();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    while let Ok(batch) = received.recv_async().await {
                        batch.into_iter().for_each(Answer::deliver);
                    }
                });
            }
            Err(_) => {
                std::thread::Builder::new()
                    .name("raft-courier".into())
                    .spawn(move || {
                        while let Ok(batch) = received.recv() {
                            batch.into_iter().for_each(Answer::deliver);
                        }
                    })?;
            }
        }
        Ok(Courier { batches })
    }

    /// Hands over a round's answers (leaving `batch` empty). Answered at
    /// once if the courier is gone (the runtime is shutting down).
    pub(crate) fn send(&self, batch: &mut Vec<Answer<O>>) {
        if batch.is_empty() {
            return;
        }
        if let Err(flume::SendError(batch)) = self.batches.send(std::mem::take(batch)) {
            batch.into_iter().for_each(Answer::deliver);
        }
    }
}
