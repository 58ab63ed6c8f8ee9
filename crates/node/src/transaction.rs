//! A connection's transaction: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Between MULTI and EXEC commands are checked and queued, not run. Those
//! on keys must all be on one shard (`-CROSSSLOT` otherwise, which voids
//! the transaction as any error found while queueing does, like Redis's
//! unknown commands and wrong arities); commands the connection answers
//! itself (PING, ECHO, CLIENT ...) are queued beside them. EXEC proposes
//! the shard's commands with the watched keys as one `Transaction` entry
//! of its raft log: applied, it runs them back to back, or returns nil
//! when a watched key's revision is not what WATCH read (written, deleted,
//! expired or flushed since), on every replica alike.

use bytes::Bytes;
use elastickv_redis::command::{Command, Parsed};
use elastickv_redis::errors;
use elastickv_redis::log;
use elastickv_redis::table::{CommandSpec, Route};
use elastickv_resp::Reply;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const SPANS_SHARDS: &str =
    "ERR this command reads or writes every shard and cannot be part of a transaction";

/// One queued command.
enum Queued {
    /// For the shard's log.
    Shard(log::queued_command::Command),
    /// Answered by the connection at EXEC.
    Local(Command),
    /// Failed while it was parsed (a bad argument): its error is its
    /// reply at EXEC, as Redis finds such errors when running it.
    Failed(Reply),
}

#[derive(Default)]
struct Queue {
    commands: Vec<Queued>,
    /// Each queued command as the client sent it, checked against the
    /// user's ACL again at EXEC.
    sent: Vec<(&'static CommandSpec, Vec<Bytes>)>,
    /// An error was found while queueing: EXEC answers EXECABORT.
    aborted: bool,
    /// The shard of the commands on keys.
    shard: Option<u32>,
}

/// What EXEC has to run.
pub struct Prepared {
    shard_part: Option<(u32, log::Transaction)>,
    commands: Vec<Queued>,
}

/// The transaction state of one connection.
#[derive(Default)]
pub struct Transaction {
    queue: Option<Queue>,
    watched: Vec<log::WatchedKey>,
    watched_shard: Option<u32>,
}

impl Transaction {
    /// Whether a queued command is one the write guard refuses
    /// (`denyoom`): then EXEC is refused while the guard is closed.
    pub fn queued_denyoom(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| {
            q.sent
                .iter()
                .any(|(spec, _)| spec.flags.contains(&"denyoom"))
        })
    }

    /// Whether MULTI was sent and not yet ended.
    pub fn queueing(&self) -> bool {
        self.queue.is_some()
    }

    /// Commands queued since MULTI; `None` outside a transaction.
    pub fn queued(&self) -> Option<usize> {
        self.queue.as_ref().map(|q| q.commands.len())
    }

    /// A command was refused before it could be queued (unknown, wrong
    /// arity, not authenticated): the transaction is void.
    pub fn refused(&mut self) {
        if let Some(queue) = &mut self.queue {
            queue.aborted = true;
        }
    }

    pub fn multi(&mut self) -> Reply {
        if self.queue.is_some() {
            return Reply::static_error("ERR MULTI calls can not be nested");
        }
        self.queue = Some(Queue::default());
        Reply::ok()
    }

    pub fn discard(&mut self) -> Reply {
        if self.queue.take().is_none() {
            return Reply::static_error("ERR DISCARD without MULTI");
        }
        self.unwatch();
        Reply::ok()
    }

    pub fn unwatch(&mut self) -> Reply {
        self.watched.clear();
        self.watched_shard = None;
        Reply::ok()
    }

    /// Queues a command parsed (or not) while queueing. `shards` are the
    /// shards of its keys.
    pub fn queue(
        &mut self,
        spec: &'static CommandSpec,
        parsed: Result<Parsed, Reply>,
        args: Vec<Bytes>,
        shards: &[u32],
    ) -> Reply {
        let Some(queue) = &mut self.queue else {
            return Reply::static_error("ERR EXEC without MULTI");
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(reply) => {
                queue.commands.push(Queued::Failed(reply));
                queue.sent.push((spec, args));
                return Reply::simple("QUEUED");
            }
        };
        let sent = (spec, args.clone());
        if runs_scripts(&parsed.command) {
            // A script runs ahead of the log and replicates its effects;
            // a transaction is applied from the log as queued. The two do
            // not combine into one atomic entry, so this is refused (and
            // voids the transaction) rather than run apart from it.
            queue.aborted = true;
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            return Reply::error(format!("ERR {name} inside MULTI is not supported"));
        }
        let queued = match parsed.spec.route {
            Route::Local => Queued::Local(parsed.command),
            Route::Server if !matches!(parsed.command, Command::DbSize | Command::RandomKey) => {
                Queued::Local(parsed.command)
            }
            Route::Key | Route::SameShard | Route::FanOut => {
                let shard = match shards {
                    [one] if queue.shard.is_none_or(|s| s == *one) => *one,
                    _ => {
                        queue.aborted = true;
                        return Reply::static_error(errors::CROSSSLOT);
                    }
                };
                queue.shard = Some(shard);
                Queued::Shard(match parsed.command {
                    // In a transaction a blocking pop does not block: it
                    // answers nil at once, as in Redis.
                    Command::Write(write) | Command::Blocking { write, .. } => {
                        log::queued_command::Command::Write(write)
                    }
                    _ => log::queued_command::Command::Read(log::ReadArguments { args }),
                })
            }
            _ => {
                queue.aborted = true;
                return Reply::static_error(SPANS_SHARDS);
            }
        };
        queue.commands.push(queued);
        queue.sent.push(sent);
        Reply::simple("QUEUED")
    }

    /// WATCH: `shard` is the keys' shard (`None` if they span shards).
    /// Returns the reply now if there is nothing to read.
    pub fn watch_shard(&self, shard: Option<u32>) -> Result<u32, Reply> {
        if self.queue.is_some() {
            return Err(Reply::static_error("ERR WATCH inside MULTI is not allowed"));
        }
        match (shard, self.watched_shard) {
            (Some(shard), None) => Ok(shard),
            (Some(shard), Some(watched)) if shard == watched => Ok(shard),
            _ => Err(Reply::static_error(errors::CROSSSLOT)),
        }
    }

    /// Records what WATCH read of keys on `shard`. A key watched twice
    /// keeps what it looked like the first time.
    pub fn watched(&mut self, shard: u32, keys: Vec<log::WatchedKey>) {
        self.watched_shard = Some(shard);
        for key in keys {
            if !self.watched.iter().any(|w| w.key == key.key) {
                self.watched.push(key);
            }
        }
    }

    /// Ends the transaction for EXEC: what to run, or the reply at once
    /// (no MULTI, EXECABORT, keys on two shards).
    /// EXEC's plan. `refused` checks each queued command again (ACL rules
    /// may have changed since it was queued): a command it refuses is
    /// not run, and its error is its reply, as in Redis.
    pub fn prepare(
        &mut self,
        refused: &mut dyn FnMut(&'static CommandSpec, &[Bytes]) -> Option<Reply>,
    ) -> Result<Prepared, Reply> {
        let Some(queue) = self.queue.take() else {
            return Err(Reply::static_error("ERR EXEC without MULTI"));
        };
        let watched = std::mem::take(&mut self.watched);
        let watched_shard = self.watched_shard.take();
        if queue.aborted {
            return Err(Reply::static_error(EXECABORT));
        }
        let shard = match (queue.shard, watched_shard) {
            (Some(a), Some(b)) if a != b => return Err(Reply::static_error(errors::CROSSSLOT)),
            (a, b) => a.or(b),
        };
        let mut commands = queue.commands;
        for (queued, (spec, args)) in commands.iter_mut().zip(&queue.sent) {
            if matches!(queued, Queued::Failed(_)) {
                continue;
            }
            if let Some(reply) = refused(spec, args) {
                *queued = Queued::Failed(reply);
            }
        }
        let shard_part = shard.map(|shard| {
            let on_shard = commands
                .iter_mut()
                .filter_map(|queued| match queued {
                    Queued::Shard(command) => Some(log::QueuedCommand {
                        command: Some(command.clone()),
                    }),
                    _ => None,
                })
                .collect();
            (
                shard,
                log::Transaction {
                    watched,
                    commands: on_shard,
                    script_effects: false,
                },
            )
        });
        Ok(Prepared {
            shard_part,
            commands,
        })
    }
}

impl Prepared {
    /// The shard and entry to propose, if any command (or watch) is on
    /// keys.
    pub fn take_shard_part(&mut self) -> Option<(u32, log::Transaction)> {
        self.shard_part.take()
    }

    /// EXEC's reply: the shard's replies (`None` if nothing went to a
    /// shard) merged in queue order with the connection's own, which
    /// `local` answers.
    pub fn finish(
        self,
        shard_reply: Option<Reply>,
        local: &mut dyn FnMut(Command) -> Reply,
    ) -> Reply {
        let mut shard_replies = match shard_reply {
            None => Vec::new().into_iter(),
            Some(Reply::Array(replies)) => replies.into_iter(),
            // Nil (a watched key changed) or an error (the transaction's
            // fate is unknown): the connection's commands do not run.
            Some(other) => return other,
        };
        let mut replies = Vec::with_capacity(self.commands.len());
        for queued in self.commands {
            replies.push(match queued {
                Queued::Shard(_) => shard_replies
                    .next()
                    .unwrap_or_else(|| Reply::static_error("ERR missing reply in transaction")),
                Queued::Local(command) => local(command),
                Queued::Failed(reply) => reply,
            });
        }
        Reply::Array(replies)
    }
}

/// Scripts, functions, and the commands that change them.
fn runs_scripts(command: &Command) -> bool {
    matches!(
        command,
        Command::Eval(_)
            | Command::Fcall(_)
            | Command::ScriptLoad(_)
            | Command::ScriptFlush
            | Command::ScriptExists(_)
            | Command::FunctionLoad { .. }
            | Command::FunctionDelete(_)
            | Command::FunctionFlush
            | Command::FunctionList { .. }
            | Command::FunctionDump
            | Command::FunctionRestore { .. }
    )
}
