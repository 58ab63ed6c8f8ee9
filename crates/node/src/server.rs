//! The Redis listener and the per-connection loop.
//!
//! A connection reads every request already buffered (a pipeline), then
//! runs them in order: consecutive keyed reads run concurrently, and so do
//! consecutive writes (queued on their shards' logs in request order);
//! when the kind changes, or a connection-level command comes, everything
//! in flight finishes first. So a pipeline behaves exactly as if run one
//! command at a time, while N pipelined writes share one fsync.

use std::sync::Arc;

use bytes::Bytes;
use elastickv_redis::{Command, Route, errors, parse_args, resolve};
use elastickv_resp::connection::WRITE_HIGH_WATER;
use elastickv_resp::{Connection, ParseLimits, ReadOutcome, Reply, RequestParser};
use elastickv_router::ReplyFuture;
use elastickv_tls::{ServedConn, TlsContext};
use futures::future::join_all;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::NodeState;
use crate::session::{self, Outcome, Session};
use crate::stats::Stats;

/// Requests taken from one read before replies are written.
const MAX_PIPELINE: usize = 1024;

/// Longest a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts clients on `listener` (over TLS with `tls`) until `shutdown`
/// flips; `slots` is shared by the node's listeners (`maxclients`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<TlsContext>>,
    slots: Arc<Semaphore>,
    state: Arc<NodeState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        Stats::add(&state.stats.connections_received, 1);
        let _ = stream.set_nodelay(true);
        let permit = slots.clone().try_acquire_owned();
        let state = state.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let laddr = stream.local_addr().unwrap_or(addr);
            let Some(stream) = handshake(stream, tls.as_deref()).await else {
                return;
            };
            let Ok(permit) = permit else {
                Stats::add(&state.stats.connections_rejected, 1);
                reject(stream, "ERR max number of clients reached").await;
                return;
            };
            if refused_by_protected_mode(&state, addr) {
                Stats::add(&state.stats.connections_rejected, 1);
                reject(stream, PROTECTED_MODE_DENIED).await;
                return;
            }
            let id = state.clients.register(addr, laddr);
            if let Err(e) = handle(stream, &state, id, shutdown).await {
                tracing::debug!(client_id = id, error = %e, "connection ended");
            }
            state.clients.unregister(id);
            state.pubsub.remove_client(id);
            drop(permit);
        });
    }
}

/// The connection as served: after its TLS handshake with `tls` (`None`
/// when that fails: the client is gone).
async fn handshake(stream: TcpStream, tls: Option<&TlsContext>) -> Option<ServedConn> {
    let Some(tls) = tls else {
        return Some(ServedConn::Plain(stream));
    };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(Ok(tls)) => Some(ServedConn::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            // As Redis: a failed handshake is logged, the connection closed.
            tracing::debug!(error = %e, "TLS handshake with a client failed");
            metrics::counter!("elastickv_tls_client_handshake_failures_total").increment(1);
            None
        }
        Err(_) => {
            tracing::debug!("TLS client sent no handshake within 10 s");
            metrics::counter!("elastickv_tls_client_handshake_failures_total").increment(1);
            None
        }
    }
}

async fn reject(stream: ServedConn, error: &'static str) {
    let mut conn = Connection::new(stream, RequestParser::default());
    conn.queue(&Reply::static_error(error));
    let _ = conn.close().await;
}

/// Redis's words for a client refused by protected mode.
const PROTECTED_MODE_DENIED: &str = "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.";

/// Whether protected mode refuses a client from `addr`: it is on, the
/// default user has no password, and the client is not on this host.
fn refused_by_protected_mode(state: &NodeState, addr: std::net::SocketAddr) -> bool {
    state
        .protected_mode
        .load(std::sync::atomic::Ordering::Relaxed)
        && state.acl.users().default_is_nopass()
        && !addr.ip().to_canonical().is_loopback()
}

/// Why a batch ended the connection.
enum BatchEnd {
    KeepOpen,
    Close,
}

/// Serves one connection until the client leaves or the node shuts down
/// (then between commands: what was read is answered first).
async fn handle(
    stream: ServedConn,
    state: &NodeState,
    id: u64,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut parser = RequestParser::new(ParseLimits::default());
    parser.set_auth_required(state.config.requirepass().is_some());
    let mut conn = Connection::new(stream, parser);
    let mut session = Session::new(id, state);
    let killed = state.clients.kill_signal(id).unwrap_or_default();
    let (messages, mut inbox) = tokio::sync::mpsc::channel(crate::pubsub::OUTBOX_MESSAGES);
    let outbox = crate::pubsub::Outbox {
        messages,
        kill: killed.clone(),
        queued_bytes: Arc::default(),
        limit_bytes: state.config.client_output_buffer_limit_pubsub_bytes,
    };
    session.outbox = Some(outbox.clone());
    loop {
        let read = tokio::select! {
            read = conn.read_request() => read?,
            () = stopping(&mut shutdown) => return conn.close().await,
            // CLIENT KILL from another connection, or too many messages
            // waiting for a subscriber that does not read.
            () = killed.notified() => return conn.close().await,
            Some(message) = inbox.recv() => {
                outbox.taken(&message);
                if session.subscriptions_revoked(state) {
                    // Its user may no longer read these channels.
                    return conn.close().await;
                }
                conn.queue(&message);
                while let Ok(message) = inbox.try_recv() {
                    outbox.taken(&message);
                    conn.queue(&message);
                }
                // A subscriber that stops reading blocks this write; its
                // outbox then fills and it is disconnected here.
                tokio::select! {
                    written = conn.flush() => written?,
                    () = killed.notified() => return Ok(()),
                }
                continue;
            }
        };
        let first = match read {
            ReadOutcome::Request(args) => args,
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::Invalid(e) => return close_on_protocol_error(conn, e).await,
        };
        let mut batch = vec![first];
        let mut protocol_error = None;
        while batch.len() < MAX_PIPELINE {
            match conn.buffered_request() {
                Ok(Some(args)) => batch.push(args),
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
        }
        let end = run_batch(&mut conn, &mut session, state, batch).await?;
        if let BatchEnd::Close = end {
            return conn.close().await;
        }
        if let Some(e) = protocol_error {
            return close_on_protocol_error(conn, e).await;
        }
        conn.parser_mut().set_auth_required(!session.authenticated);
        conn.flush().await?;
    }
}

/// Resolves once the node is shutting down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it right here.
    let _stopped = shutdown.wait_for(|stop| *stop).await.is_ok();
}

async fn close_on_protocol_error(
    mut conn: Connection<ServedConn>,
    e: elastickv_resp::ProtocolError,
) -> std::io::Result<()> {
    tracing::debug!(error = %e, "protocol error; closing the connection");
    if let Some(text) = e.reply_text() {
        conn.queue(&Reply::error(text));
    }
    conn.close().await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// Commands started but not yet finished, in request order.
struct InFlight {
    replies: Vec<ReplyFuture>,
    /// Per reply: dropped instead of sent (CLIENT REPLY OFF or SKIP).
    silent: Vec<bool>,
    kind: Option<Kind>,
}

impl InFlight {
    async fn finish(&mut self, conn: &mut Connection<ServedConn>) {
        self.kind = None;
        if self.replies.is_empty() {
            return;
        }
        let silent = std::mem::take(&mut self.silent);
        for (reply, silent) in join_all(self.replies.drain(..)).await.iter().zip(silent) {
            if !silent {
                conn.queue(reply);
            }
        }
    }

    fn push(&mut self, reply: ReplyFuture, silent: bool) {
        self.replies.push(reply);
        self.silent.push(silent);
    }

    fn push_ready(&mut self, reply: Reply, silent: bool) {
        self.push(Box::pin(std::future::ready(reply)), silent);
    }
}

async fn run_batch(
    conn: &mut Connection<ServedConn>,
    session: &mut Session,
    state: &NodeState,
    batch: Vec<Vec<Bytes>>,
) -> std::io::Result<BatchEnd> {
    let mut in_flight = InFlight {
        replies: Vec::with_capacity(batch.len()),
        silent: Vec::with_capacity(batch.len()),
        kind: None,
    };
    let mut last_command = None;
    for args in batch {
        session::count_command(state);
        // CLIENT REPLY OFF, or the command after CLIENT REPLY SKIP.
        let silent = session.silence_next_reply();
        let spec = match resolve(&args) {
            Ok(spec) => spec,
            Err(reply) => {
                // A known command with the wrong arity is rejected, as in
                // Redis; an unknown one only counts as an error.
                match args
                    .first()
                    .and_then(|name| elastickv_redis::table::lookup(name))
                {
                    Some(known) => state.stats.command_rejected(known.name, &reply),
                    None => state.stats.count_reply(&reply),
                }
                session.tx.refused();
                in_flight.push_ready(reply, silent);
                continue;
            }
        };
        last_command = Some(spec.name);
        if let Some(reply) = session.refusal(state, spec, &args) {
            let reply = rejected(session, spec.name, reply);
            state.stats.command_rejected(spec.name, &reply);
            session.tx.refused();
            in_flight.push_ready(reply, silent);
            continue;
        }
        // The write guard (Redis's maxmemory check): denyoom commands, and
        // anything queued in MULTI but EXEC, DISCARD, QUIT and RESET.
        if let Some(oom) = state.guard.refusal() {
            let queued = session.tx.queueing()
                && !matches!(spec.name, "exec" | "discard" | "quit" | "reset");
            let exec_writes = spec.name == "exec" && session.tx.queued_denyoom();
            if queued || exec_writes || spec.flags.contains(&"denyoom") {
                let reply = rejected(session, spec.name, Reply::static_error(oom));
                state.stats.command_rejected(spec.name, &reply);
                session.tx.refused();
                in_flight.push_ready(reply, silent);
                continue;
            }
        }
        if session.tx.queueing()
            && !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            // Checked and queued for EXEC, not run.
            let parsed = parse_args(spec, &args);
            let shards = match &parsed {
                Ok(parsed) => state.router.key_shards(parsed, &args),
                Err(_) => Vec::new(),
            };
            let reply = session.tx.queue(spec, parsed, args, &shards);
            in_flight.push_ready(reply, silent);
            continue;
        }
        // CLIENT PAUSE holds commands here (writes only, or all).
        state.pause.wait(spec.is_write()).await;
        let began = std::time::Instant::now();
        let parsed = match parse_args(spec, &args) {
            Ok(parsed) => parsed,
            Err(reply) => {
                // Redis finds these inside the command: it ran and failed.
                state.stats.command_done(spec.name, began.elapsed(), &reply);
                in_flight.push_ready(reply, silent);
                continue;
            }
        };
        // Commands that wait (for what the connection sent before them,
        // for their shard, for keys to change) run here, in order.
        if waits(&parsed.command) {
            in_flight.finish(conn).await;
            let Some(reply) = run_waiting(conn, session, state, parsed.command).await? else {
                // The client left while blocked.
                return Ok(BatchEnd::Close);
            };
            state.stats.command_done(spec.name, began.elapsed(), &reply);
            // A blocked command's wait is not its run time.
            if !spec.flags.contains(&"skip_slowlog") && !spec.flags.contains(&"blocking") {
                state.slowlog.record(began.elapsed(), &args, &session.ident);
            }
            conn.set_protocol(session.protocol);
            if !silent {
                conn.queue(&reply);
            }
            continue;
        }
        let local = matches!(spec.route, Route::Local)
            || (spec.route == Route::Server
                && !matches!(
                    parsed.command,
                    elastickv_redis::Command::DbSize | elastickv_redis::Command::RandomKey
                ));
        if local {
            in_flight.finish(conn).await;
            let outcome = session.execute(state, parsed.command);
            state.slowlog.record(began.elapsed(), &args, &session.ident);
            match outcome {
                Outcome::Many(replies) => {
                    if let Some(first) = replies.first() {
                        state.stats.command_done(spec.name, began.elapsed(), first);
                    }
                    if !silent {
                        for reply in &replies {
                            conn.queue(reply);
                        }
                    }
                }
                Outcome::Reply(reply) => {
                    state.stats.command_done(spec.name, began.elapsed(), &reply);
                    conn.set_protocol(session.protocol);
                    // CLIENT REPLY decides about its own reply.
                    if session.take_own_reply().unwrap_or(!silent) {
                        conn.queue(&reply);
                    }
                    if session.close_after_reply {
                        return Ok(BatchEnd::Close);
                    }
                }
                Outcome::Close(reply) => {
                    state.stats.command_done(spec.name, began.elapsed(), &reply);
                    if !silent {
                        conn.queue(&reply);
                    }
                    return Ok(BatchEnd::Close);
                }
            }
        } else {
            let kind = if spec.is_write() {
                Kind::Write
            } else {
                Kind::Read
            };
            if in_flight.kind.is_some_and(|k| k != kind) {
                in_flight.finish(conn).await;
            }
            let logged = args.clone();
            let started = state.router.start(parsed, args).await;
            let (stats, slowlog, ident) = (
                state.stats.clone(),
                state.slowlog.clone(),
                session.ident.clone(),
            );
            let name = spec.name;
            in_flight.push(
                Box::pin(async move {
                    let reply = started.await;
                    stats.command_done(name, began.elapsed(), &reply);
                    slowlog.record(began.elapsed(), &logged, &ident);
                    reply
                }),
                silent,
            );
            in_flight.kind = Some(kind);
        }
        if conn.pending_write_bytes() > WRITE_HIGH_WATER {
            in_flight.finish(conn).await;
            conn.flush().await?;
        }
    }
    in_flight.finish(conn).await;
    if let Some(name) = last_command {
        let multi = session
            .tx
            .queued()
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        state.clients.update(session.id, |c| {
            c.last_active = std::time::Instant::now();
            c.last_command = name.to_string();
            c.multi = multi;
        });
    }
    Ok(BatchEnd::KeepOpen)
}

/// A refused command's reply; a refused EXEC discards the transaction,
/// saying why (Redis's rejectCommand).
fn rejected(session: &mut Session, command: &str, reply: Reply) -> Reply {
    match (&reply, command) {
        (Reply::Error(text), "exec") => {
            session.tx = crate::transaction::Transaction::default();
            let mut aborted = b"EXECABORT Transaction discarded because of: ".to_vec();
            aborted.extend_from_slice(text);
            Reply::Error(Bytes::from(aborted))
        }
        _ => reply,
    }
}

/// EXEC: the queued commands on keys go to their shard as one entry; the
/// connection answers its own; the replies come back in queue order.
async fn exec(session: &mut Session, state: &NodeState) -> Reply {
    use elastickv_redis::acl::Denied;
    // ACL rules may have changed since the commands were queued: each is
    // checked again (Redis's words for those refused).
    let user = session.acl_caller(state);
    let mut refused = |spec: &'static elastickv_redis::table::CommandSpec, args: &[Bytes]| {
        let denied = match &user {
            Some(caller) => caller.user.check(spec, args).err()?,
            None => Denied::Command,
        };
        let (kind, object, reason) = match denied {
            Denied::Command => (
                "command",
                Bytes::from(spec.name),
                "no permission to execute the command or subcommand",
            ),
            Denied::Key(pos) => (
                "key",
                args[pos].clone(),
                "no permission to touch the specified keys",
            ),
            Denied::Channel(pos) => (
                "channel",
                args[pos].clone(),
                "no permission to access one of the channels used as arguments",
            ),
        };
        if let Some(caller) = &user {
            crate::acl::record_refusal(
                state,
                caller.client_id,
                caller.username.clone(),
                kind,
                "multi",
                object,
            );
        }
        Some(Reply::error(format!(
            "NOPERM ACLs rules changed between the moment the transaction was accumulated and \
             the EXEC call. This command is no longer allowed for the following reason: {reason}"
        )))
    };
    let mut prepared = match session.tx.prepare(&mut refused) {
        Ok(prepared) => prepared,
        Err(reply) => return reply,
    };
    let shard_reply = match prepared.take_shard_part() {
        Some((shard, transaction)) => Some(state.router.transaction(shard, transaction).await),
        None => None,
    };
    prepared.finish(
        shard_reply,
        &mut |command| match session.execute(state, command) {
            // SUBSCRIBE in a transaction: its first reply stands for it.
            Outcome::Many(replies) => replies.into_iter().next().unwrap_or(Reply::Null),
            Outcome::Reply(reply) | Outcome::Close(reply) => reply,
        },
    )
}

/// WATCH: what the keys look like now, read linearizably on their shard.
async fn watch(session: &mut Session, state: &NodeState, keys: Vec<Bytes>) -> Reply {
    let mut shards = keys.iter().map(|key| state.router.shard_of(key));
    let first = shards.next();
    let shard = first.filter(|&first| shards.all(|s| s == first));
    let shard = match session.tx.watch_shard(shard) {
        Ok(shard) => shard,
        Err(reply) => return reply,
    };
    match state.router.watch(shard, &keys).await {
        Ok(seen) => {
            session.tx.watched(shard, seen);
            Reply::ok()
        }
        Err(reply) => reply,
    }
}

/// WAIT: how many replicas hold every write acknowledged so far. A write
/// is acknowledged once a majority of its shard's voters has it, so at
/// least a majority less this one do; on a shard this node leads, the
/// followers that have every committed entry count. The answer is the
/// least over the shards (the connection's writes may be on any), polled
/// until it reaches `replicas` or `timeout_ms` passes (0: no limit, as in
/// Redis).
async fn wait_for_replicas(state: &NodeState, replicas: u64, timeout_ms: u64) -> Reply {
    let deadline = (timeout_ms > 0)
        .then(|| {
            std::time::Instant::now().checked_add(std::time::Duration::from_millis(timeout_ms))
        })
        .flatten();
    loop {
        let raft = &state.router.backend().raft;
        let holding = (0..state.router.shard_count())
            .map(|shard| match raft.shard_status(shard) {
                Some(status) => {
                    let quorum = status.voters.len() / 2 + 1;
                    let guaranteed = quorum.saturating_sub(1);
                    if status.role == elastickv_raft::Role::Leader {
                        guaranteed.max(status.caught_up.len())
                    } else {
                        guaranteed
                    }
                }
                None => 0,
            })
            .min()
            .unwrap_or(0) as u64;
        if holding >= replicas || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Reply::Integer(i64::try_from(holding).unwrap_or(i64::MAX));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Whether `command` waits rather than being started and finished later
/// with the connection's other commands.
fn waits(command: &Command) -> bool {
    matches!(
        command,
        Command::Exec
            | Command::Watch(_)
            | Command::Wait { .. }
            | Command::Publish { .. }
            | Command::Blocking { .. }
            | Command::Eval(_)
            | Command::ScriptLoad(_)
            | Command::ScriptFlush
            | Command::ScriptExists(_)
            | Command::Fcall(_)
            | Command::FunctionLoad { .. }
            | Command::FunctionDelete(_)
            | Command::FunctionFlush
            | Command::FunctionList { .. }
            | Command::FunctionDump
            | Command::FunctionRestore { .. }
    )
}

/// Runs a command that [`waits`]; `None` if the client left meanwhile.
async fn run_waiting(
    conn: &mut Connection<ServedConn>,
    session: &mut Session,
    state: &NodeState,
    command: Command,
) -> std::io::Result<Option<Reply>> {
    Ok(Some(match command {
        Command::Blocking {
            write,
            keys,
            timeout_ms,
        } => {
            // Earlier replies go out before the wait, as in Redis.
            conn.flush().await?;
            let shards = keys.iter().map(|key| state.router.shard_of(key));
            match same_shard(shards) {
                Some(shard) => {
                    return block(conn, session, state, shard, write, &keys, timeout_ms).await;
                }
                None => Reply::static_error(errors::CROSSSLOT),
            }
        }
        Command::Publish {
            channel,
            message,
            sharded,
        } => publish(state, channel, message, sharded).await,
        Command::Watch(keys) => watch(session, state, keys).await,
        Command::Eval(eval) => crate::scripting::eval(state, eval, session.acl_caller(state)).await,
        Command::ScriptLoad(body) => crate::scripting::load(state, body).await,
        Command::ScriptFlush => crate::scripting::flush(state).await,
        Command::ScriptExists(shas) => crate::scripting::exists(state, &shas).await,
        Command::Fcall(fcall) => {
            crate::scripting::fcall(state, fcall, session.acl_caller(state)).await
        }
        Command::FunctionLoad { replace, code } => {
            crate::scripting::function_load(state, replace, code).await
        }
        Command::FunctionDelete(name) => crate::scripting::function_delete(state, name).await,
        Command::FunctionFlush => crate::scripting::function_flush(state).await,
        Command::FunctionList { pattern, with_code } => {
            crate::scripting::function_list(state, pattern, with_code).await
        }
        Command::FunctionDump => crate::scripting::function_dump(state).await,
        Command::FunctionRestore { payload, policy } => {
            crate::scripting::function_restore(state, payload, policy).await
        }
        Command::Wait {
            replicas,
            timeout_ms,
        } => wait_for_replicas(state, replicas, timeout_ms).await,
        _ => exec(session, state).await,
    }))
}

/// The one shard of `shards`, if they are all the same.
fn same_shard(mut shards: impl Iterator<Item = u32>) -> Option<u32> {
    let first = shards.next()?;
    shards.all(|s| s == first).then_some(first)
}

/// BLPOP and kin: tries `write` (a pop answering nil when there is
/// nothing), then again each time this node applies a write to one of
/// `keys`, until it answers, the timeout passes (nil array, as Redis),
/// CLIENT UNBLOCK says so, or the client leaves (`None`). While it waits
/// the connection reads ahead, so a client that closes is noticed; the
/// wait holds no raft thread.
async fn block(
    conn: &mut Connection<ServedConn>,
    session: &Session,
    state: &NodeState,
    shard: u32,
    write: elastickv_redis::log::Write,
    keys: &[Bytes],
    timeout_ms: u64,
) -> std::io::Result<Option<Reply>> {
    // A timeout too far to represent is no timeout.
    let deadline = (timeout_ms > 0)
        .then(|| {
            tokio::time::Instant::now().checked_add(std::time::Duration::from_millis(timeout_ms))
        })
        .flatten();
    let unblock = state.clients.unblock_signal(session.id).unwrap_or_default();
    let registration = state.waiters.register(keys);
    unblock.set_blocked(true);
    let outcome = loop {
        let reply = state.router.start_write(shard, write.clone()).await.await;
        if !matches!(reply, Reply::NullArray | Reply::Null) {
            break Some(reply);
        }
        let timed_out = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = registration.changed() => {}
            () = timed_out => break Some(Reply::NullArray),
            error = unblock.unblocked() => {
                break Some(if error {
                    Reply::static_error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
                } else {
                    Reply::NullArray
                });
            }
            more = conn.read_more() => {
                if !more? {
                    break None;
                }
            }
        }
    };
    unblock.set_blocked(false);
    Ok(outcome)
}

/// PUBLISH, SPUBLISH: a `Publish` entry on one shard's log (every channel
/// on shard 0, so messages keep one order; a shard channel on its slot's
/// shard), which every node applies by handing the message to its own
/// subscribers. Answers how many clients of this node it reaches.
async fn publish(state: &NodeState, channel: Bytes, message: Bytes, sharded: bool) -> Reply {
    let shard = if sharded {
        state.router.shard_of(&channel)
    } else {
        0
    };
    let write = elastickv_redis::cmd::pubsub::publish_write(channel.clone(), message, sharded);
    let reply = state.router.start_write(shard, write).await.await;
    if reply.is_error() {
        return reply;
    }
    Reply::Integer(state.pubsub.receivers(&channel, sharded) as i64)
}
