//! Per-connection state and the commands a connection answers itself:
//! PING, ECHO, QUIT, HELLO, SELECT, AUTH, ACL, CLIENT, COMMAND, CONFIG,
//! INFO.

use bytes::Bytes;
use elastickv_redis::cmd::pubsub::Kind;
use elastickv_redis::command::{Command, ReplyMode};
use elastickv_redis::table::CommandSpec;
use elastickv_redis::{errors, glob, introspect};
use elastickv_resp::{ProtocolVersion, Reply};

use crate::NodeState;
use crate::clients::describe;
use crate::info;
use crate::pubsub::Outbox;
use crate::slowlog::ClientIdent;
use crate::stats::Stats;
use crate::transaction::Transaction;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a local command asks of the connection.
pub enum Outcome {
    Reply(Reply),
    /// Several replies (SUBSCRIBE answers once per channel).
    Many(Vec<Reply>),
    /// Reply, then close (QUIT).
    Close(Reply),
}

pub struct Session {
    pub id: u64,
    pub authenticated: bool,
    /// The ACL user the connection runs as.
    pub user: Bytes,
    /// That user as last read, with the ACL generation it was read at.
    user_cache: Option<(u64, Arc<elastickv_redis::acl::User>)>,
    /// The command being run, as the client named it (for ACL LOG).
    command_name: Bytes,
    pub protocol: ProtocolVersion,
    /// MULTI's queue and WATCH's keys.
    pub tx: Transaction,
    /// Address and name, for SLOWLOG entries.
    pub ident: Arc<ClientIdent>,
    /// CLIENT REPLY's state.
    replies: Replies,
    /// Whether the command just run sends its reply whatever `replies`
    /// says (CLIENT REPLY ON does, OFF and SKIP do not).
    own_reply: Option<bool>,
    /// CLIENT KILL matched this connection: close once its reply is out.
    pub close_after_reply: bool,
    /// Channels, patterns and shard channels subscribed to.
    subscriptions: HashMap<Kind, HashSet<Bytes>>,
    /// Where this connection's pub/sub messages are queued.
    pub outbox: Option<Outbox>,
}

/// SUBSCRIBE's and UNSUBSCRIBE's words for a kind of subscription.
fn words(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Channel => ("subscribe", "unsubscribe"),
        Kind::Pattern => ("psubscribe", "punsubscribe"),
        Kind::Shard => ("ssubscribe", "sunsubscribe"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replies {
    On,
    Off,
    /// The next command's reply is dropped.
    SkipNext,
}

fn bulk(s: impl Into<Bytes>) -> Reply {
    Reply::Bulk(s.into())
}

impl Session {
    pub fn new(id: u64, state: &NodeState) -> Session {
        Session {
            id,
            authenticated: default_authenticates(state),
            user: Bytes::from_static(b"default"),
            user_cache: None,
            command_name: Bytes::new(),
            protocol: ProtocolVersion::Resp2,
            tx: Transaction::default(),
            ident: Arc::new(ClientIdent {
                peer: state
                    .clients
                    .get(id)
                    .map_or(String::new(), |c| c.addr.to_string()),
                name: Bytes::new(),
            }),
            replies: Replies::On,
            own_reply: None,
            close_after_reply: false,
            subscriptions: HashMap::new(),
            outbox: None,
        }
    }

    /// Authenticates the connection as `username` (the default user when
    /// none is given) if `password` opens it: Redis's
    /// `ACLAuthenticateUser`, with the failure in ACL LOG.
    fn authenticate(
        &mut self,
        state: &NodeState,
        username: Option<&[u8]>,
        password: &[u8],
    ) -> Reply {
        let username = Bytes::copy_from_slice(username.unwrap_or(b"default"));
        let users = state.acl.users();
        if users.get(&username).is_some_and(|u| u.accepts(password)) {
            self.authenticated = true;
            self.set_user(state, username);
            return Reply::ok();
        }
        self.log_refusal(state, "auth", self.command_name.clone(), username);
        Reply::static_error(errors::WRONGPASS)
    }

    fn set_user(&mut self, state: &NodeState, username: Bytes) {
        self.user_cache = None;
        let shown = username.clone();
        state.clients.update(self.id, |c| c.user = shown);
        self.user = username;
    }

    /// The connection's user as the ACL has it now (`None`: deleted).
    fn current_user(&mut self, state: &NodeState) -> Option<Arc<elastickv_redis::acl::User>> {
        let generation = state.acl.generation();
        if let Some((seen, user)) = &self.user_cache
            && *seen == generation
        {
            return Some(user.clone());
        }
        let user = Arc::new(state.acl.users().get(&self.user)?.clone());
        self.user_cache = Some((generation, user.clone()));
        Some(user)
    }

    fn log_refusal(&self, state: &NodeState, reason: &'static str, object: Bytes, username: Bytes) {
        let context = if self.tx.queueing() {
            "multi"
        } else {
            "toplevel"
        };
        crate::acl::record_refusal(state, self.id, username, reason, context, object);
    }

    /// The user a script or EXEC run by this connection runs as.
    pub fn acl_caller(&mut self, state: &NodeState) -> Option<crate::acl::AclCaller> {
        Some(crate::acl::AclCaller {
            user: self.current_user(state)?,
            username: self.user.clone(),
            client_id: self.id,
        })
    }

    /// Why the connection refuses `spec` with `args` now: it is not
    /// authenticated, its user may not run it (logged in ACL LOG), or it
    /// is subscribed over RESP2 (then it may only (un)subscribe, PING,
    /// QUIT or RESET, as in Redis).
    pub fn refusal(
        &mut self,
        state: &NodeState,
        spec: &'static CommandSpec,
        args: &[Bytes],
    ) -> Option<Reply> {
        self.command_name = args.first().cloned().unwrap_or_default();
        if !self.authenticated && !spec.flags.contains(&"no_auth") {
            return Some(Reply::static_error(errors::NOAUTH));
        }
        let denied = match self.current_user(state) {
            Some(user) => user.check(spec, args).err(),
            None => Some(elastickv_redis::acl::Denied::Command),
        };
        if let Some(denied) = denied {
            let (reason, object) = match denied {
                elastickv_redis::acl::Denied::Command => ("command", Bytes::from(spec.name)),
                elastickv_redis::acl::Denied::Key(pos) => ("key", args[pos].clone()),
                elastickv_redis::acl::Denied::Channel(pos) => ("channel", args[pos].clone()),
            };
            self.log_refusal(state, reason, object, self.user.clone());
            return Some(Reply::error(denied.error(spec.name)));
        }
        let allowed_subscribed = matches!(
            spec.name,
            "subscribe"
                | "ssubscribe"
                | "psubscribe"
                | "unsubscribe"
                | "sunsubscribe"
                | "punsubscribe"
                | "ping"
                | "quit"
                | "reset"
        );
        if self.subscribed() && self.protocol == ProtocolVersion::Resp2 && !allowed_subscribed {
            return Some(Reply::error(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            )));
        }
        None
    }

    /// Whether the connection's user lost the right to a channel or
    /// pattern it is subscribed to (or was deleted) since it subscribed:
    /// then it must be disconnected, as Redis does on ACL SETUSER.
    /// Cheap while the ACL has not changed.
    pub fn subscriptions_revoked(&mut self, state: &NodeState) -> bool {
        if self
            .user_cache
            .as_ref()
            .is_some_and(|(seen, _)| *seen == state.acl.generation())
        {
            return false;
        }
        let Some(user) = self.current_user(state) else {
            return true;
        };
        self.subscriptions.iter().any(|(kind, names)| {
            let is_pattern = *kind == Kind::Pattern;
            names
                .iter()
                .any(|name| !user.may_use_channel(name, is_pattern))
        })
    }

    /// Whether the connection is subscribed to anything (in RESP2 it may
    /// then only (un)subscribe, PING, QUIT or RESET).
    pub fn subscribed(&self) -> bool {
        self.subscriptions.values().any(|s| !s.is_empty())
    }

    /// Redis counts channels and patterns together, shard channels apart.
    fn subscription_count(&self, kind: Kind) -> i64 {
        let len = |k: Kind| self.subscriptions.get(&k).map_or(0, HashSet::len);
        let count = match kind {
            Kind::Shard => len(Kind::Shard),
            _ => len(Kind::Channel) + len(Kind::Pattern),
        };
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn subscribe(&mut self, state: &NodeState, kind: Kind, names: Vec<Bytes>) -> Vec<Reply> {
        let word = words(kind).0;
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            let added = self
                .subscriptions
                .entry(kind)
                .or_default()
                .insert(name.clone());
            if added && let Some(outbox) = &self.outbox {
                state.pubsub.subscribe(kind, &name, self.id, outbox);
            }
            replies.push(Reply::Push(vec![
                bulk(word),
                Reply::Bulk(name),
                Reply::Integer(self.subscription_count(kind)),
            ]));
        }
        replies
    }

    /// Unsubscribes from `names`, or from every subscription of `kind`.
    fn unsubscribe(&mut self, state: &NodeState, kind: Kind, names: Vec<Bytes>) -> Vec<Reply> {
        let word = words(kind).1;
        let names = if names.is_empty() {
            self.subscriptions
                .get(&kind)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            names
        };
        if names.is_empty() {
            return vec![Reply::Push(vec![
                bulk(word),
                Reply::Null,
                Reply::Integer(self.subscription_count(kind)),
            ])];
        }
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            if let Some(set) = self.subscriptions.get_mut(&kind) {
                set.remove(&name);
            }
            state.pubsub.unsubscribe(kind, &name, self.id);
            replies.push(Reply::Push(vec![
                bulk(word),
                Reply::Bulk(name),
                Reply::Integer(self.subscription_count(kind)),
            ]));
        }
        replies
    }

    /// Whether the reply of the command about to run is dropped (CLIENT
    /// REPLY OFF, or the one command after SKIP).
    pub fn silence_next_reply(&mut self) -> bool {
        match self.replies {
            Replies::On => false,
            Replies::Off => true,
            Replies::SkipNext => {
                self.replies = Replies::On;
                true
            }
        }
    }

    /// What the command just run decided about its own reply, once.
    pub fn take_own_reply(&mut self) -> Option<bool> {
        self.own_reply.take()
    }

    pub fn execute(&mut self, state: &NodeState, command: Command) -> Outcome {
        let reply = match command {
            // Subscribed over RESP2, PING answers as a message would.
            Command::Ping(message)
                if self.subscribed() && self.protocol == ProtocolVersion::Resp2 =>
            {
                Reply::Array(vec![bulk("pong"), Reply::Bulk(message.unwrap_or_default())])
            }
            Command::Subscribe(kind, names) => {
                return Outcome::Many(self.subscribe(state, kind, names));
            }
            Command::Unsubscribe(kind, names) => {
                return Outcome::Many(self.unsubscribe(state, kind, names));
            }
            Command::PubsubChannels(kind, pattern) => Reply::Array(
                state
                    .pubsub
                    .active(kind, pattern.as_deref())
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            ),
            Command::PubsubNumSub(kind, names) => Reply::Array(
                names
                    .into_iter()
                    .flat_map(|name| {
                        let count = state.pubsub.count(kind, &name);
                        [Reply::Bulk(name), Reply::Integer(count as i64)]
                    })
                    .collect(),
            ),
            Command::PubsubNumPat => Reply::Integer(state.pubsub.patterns() as i64),
            Command::Ping(None) => Reply::simple("PONG"),
            Command::Ping(Some(message)) | Command::Echo(message) => Reply::Bulk(message),
            Command::Quit => return Outcome::Close(Reply::ok()),
            Command::ClientReply(mode) => {
                match mode {
                    ReplyMode::On => {
                        self.replies = Replies::On;
                        self.own_reply = Some(true);
                    }
                    ReplyMode::Off => {
                        self.replies = Replies::Off;
                        self.own_reply = Some(false);
                    }
                    ReplyMode::Skip => {
                        if self.replies != Replies::Off {
                            self.replies = Replies::SkipNext;
                        }
                        self.own_reply = Some(false);
                    }
                }
                Reply::ok()
            }
            // No memory-based client eviction here: nothing to exempt.
            Command::ClientNoEvict(_) => Reply::ok(),
            Command::ClientTracking(false) => Reply::ok(),
            Command::ClientTracking(true) => Reply::static_error(
                "ERR client-side caching (CLIENT TRACKING ON) is not supported by elastickv yet",
            ),
            Command::ClientPause {
                timeout_ms,
                writes_only,
            } => {
                state.pause.pause(timeout_ms, writes_only);
                Reply::ok()
            }
            Command::ClientUnblock { id, error } => Reply::Integer(i64::from(
                u64::try_from(id).is_ok_and(|id| state.clients.unblock(id, error)),
            )),
            Command::ClientUnpause => {
                state.pause.unpause();
                Reply::ok()
            }
            Command::ClientKill(filter) => {
                let (killed, me) = state.clients.kill(&filter, self.id);
                if me {
                    self.close_after_reply = true;
                }
                if filter.old_form {
                    if killed == 0 {
                        Reply::static_error("ERR No such client")
                    } else {
                        Reply::ok()
                    }
                } else {
                    Reply::Integer(killed as i64)
                }
            }
            Command::Reset => {
                for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
                    let _ = self.unsubscribe(state, kind, Vec::new());
                }
                self.tx = Transaction::default();
                self.protocol = ProtocolVersion::Resp2;
                self.replies = Replies::On;
                self.authenticated = default_authenticates(state);
                self.set_user(state, Bytes::from_static(b"default"));
                let _ = self.set_name(state, Bytes::new());
                Reply::simple("RESET")
            }
            Command::Multi => self.tx.multi(),
            Command::Discard => self.tx.discard(),
            Command::Unwatch => self.tx.unwatch(),
            Command::Select(0) => Reply::ok(),
            Command::Select(_) => Reply::static_error(errors::DB_INDEX_RANGE),
            Command::Auth { username, password } => {
                if username.is_none() && state.acl.users().default_is_nopass() {
                    Reply::static_error(errors::AUTH_NOT_CONFIGURED)
                } else {
                    self.authenticate(state, username.as_deref(), &password)
                }
            }
            Command::Acl(request) => crate::acl_command::run(self, state, request),
            Command::Hello {
                protover,
                auth,
                setname,
            } => self.hello(state, protover, auth, setname),
            Command::ClientId => Reply::Integer(self.id as i64),
            Command::ClientGetName => match state.clients.get(self.id).and_then(|c| c.name) {
                Some(name) => Reply::Bulk(name),
                None => Reply::Null,
            },
            Command::ClientSetName(name) => match self.set_name(state, name) {
                Ok(()) => Reply::ok(),
                Err(reply) => reply,
            },
            Command::ClientInfo => match state.clients.get(self.id) {
                Some(entry) => Reply::Verbatim {
                    format: *b"txt",
                    text: Bytes::from(describe(self.id, &entry)),
                },
                None => Reply::Null,
            },
            Command::ClientList => {
                let text: String = state
                    .clients
                    .all()
                    .iter()
                    .map(|(id, entry)| describe(*id, entry))
                    .collect();
                Reply::Verbatim {
                    format: *b"txt",
                    text: Bytes::from(text),
                }
            }
            Command::Help { container, lines } => introspect::help(container, lines),
            Command::ClientHelp => introspect::help(
                "client",
                &[
                    "GETNAME",
                    "    Return the name of the current connection.",
                    "ID",
                    "    Return the ID of the current connection.",
                    "INFO",
                    "    Return information about the current client connection.",
                    "LIST",
                    "    Return information about client connections.",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                ],
            ),
            Command::CommandAll => introspect::all_commands(),
            Command::CommandCount => introspect::command_count(),
            Command::CommandInfo(names) => introspect::command_info_for(&names),
            Command::CommandDocs(_) => introspect::command_docs(),
            Command::CommandList => introspect::command_list(),
            Command::CommandHelp => introspect::help(
                "command",
                &[
                    "(no subcommand)",
                    "    Return details about all commands.",
                    "COUNT",
                    "    Return the total number of commands in this server.",
                    "LIST",
                    "    Return a list of all commands in this server.",
                    "INFO [<command-name> ...]",
                    "    Return details about multiple commands.",
                    "DOCS [<command-name> ...]",
                    "    Return documentation details about multiple commands.",
                ],
            ),
            Command::ConfigGet(patterns) => config_get(state, &patterns),
            Command::ConfigSet(args) => config_set(state, &args),
            Command::ConfigResetStat => {
                state.stats.reset();
                Reply::ok()
            }
            Command::ConfigHelp => introspect::help(
                "config",
                &[
                    "GET <pattern>",
                    "    Return parameters matching the glob-like <pattern> and their values.",
                    "SET <directive> <value>",
                    "    Set the configuration <directive> to <value>.",
                    "RESETSTAT",
                    "    Reset statistics reported by the INFO command.",
                ],
            ),
            Command::Time => time_reply(),
            Command::ScriptKill => state.scripts.kill(false),
            Command::FunctionKill => state.scripts.kill(true),
            Command::FunctionStats => state.scripts.stats(),
            // Nothing is ever saved to a dump file: the start, as for a
            // Redis that saves nothing.
            Command::LastSave => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let started = now.saturating_sub(state.started.elapsed());
                Reply::Integer(i64::try_from(started.as_secs()).unwrap_or(i64::MAX))
            }
            Command::SlowlogGet(count) => state.slowlog.get(count),
            Command::SlowlogLen => Reply::Integer(state.slowlog.len() as i64),
            Command::SlowlogReset => {
                state.slowlog.reset();
                Reply::ok()
            }
            // Latency monitoring is off (Redis's default): no samples.
            Command::LatencyLatest | Command::LatencyHistory => Reply::Array(Vec::new()),
            Command::LatencyReset => Reply::Integer(0),
            Command::LatencyGraph(event) => Reply::error(format!(
                "ERR No samples available for event '{}'",
                String::from_utf8_lossy(&event)
            )),
            Command::LatencyDoctor => Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(LATENCY_DOCTOR.as_bytes()),
            },
            Command::Info(sections) => Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from(info::render(state, &sections)),
            },
            _ => Reply::static_error("ERR command is not answered by the connection"),
        };
        Outcome::Reply(reply)
    }

    /// CLIENT SETNAME's rules: printable ASCII without spaces; empty
    /// clears.
    fn set_name(&mut self, state: &NodeState, name: Bytes) -> Result<(), Reply> {
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Err(Reply::static_error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        self.ident = Arc::new(ClientIdent {
            peer: self.ident.peer.clone(),
            name: name.clone(),
        });
        state
            .clients
            .update(self.id, |c| c.name = (!name.is_empty()).then_some(name));
        Ok(())
    }

    fn hello(
        &mut self,
        state: &NodeState,
        protover: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    ) -> Reply {
        if let Some((username, password)) = auth {
            let reply = self.authenticate(state, Some(&username), &password);
            if reply.is_error() {
                return reply;
            }
        }
        if !self.authenticated {
            return Reply::static_error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            );
        }
        if let Some(Err(reply)) = setname.map(|name| self.set_name(state, name)) {
            return reply;
        }
        match protover {
            Some(3) => self.protocol = ProtocolVersion::Resp3,
            Some(_) => self.protocol = ProtocolVersion::Resp2,
            None => {}
        }
        let proto = match self.protocol {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        };
        state.clients.update(self.id, |c| c.resp = proto as u8);
        Reply::Map(vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk(crate::REDIS_VERSION)),
            (bulk("proto"), Reply::Integer(proto)),
            (bulk("id"), Reply::Integer(self.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("master")),
            (bulk("modules"), Reply::Array(Vec::new())),
        ])
    }
}

/// Whether a new connection is authenticated from the start: the default
/// user is on and needs no password.
fn default_authenticates(state: &NodeState) -> bool {
    state
        .acl
        .users()
        .get(b"default".as_slice())
        .is_some_and(|u| u.enabled && u.nopass)
}

/// TIME's reply: this node's clock, seconds and microseconds.
pub fn time_reply() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        bulk(now.as_secs().to_string()),
        bulk(now.subsec_micros().to_string()),
    ])
}

/// LATENCY DOCTOR's answer with latency monitoring off, as Redis words it.
const LATENCY_DOCTOR: &str = "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n";

/// The configuration parameters CONFIG GET reports.
fn config_params(state: &NodeState) -> Vec<(&'static str, String)> {
    let c = &state.config;
    vec![
        ("bind", state.redis_addr.ip().to_string()),
        ("port", state.redis_addr.port().to_string()),
        ("databases", "1".into()),
        ("maxclients", c.maxclients.to_string()),
        ("requirepass", c.requirepass.clone()),
        (
            "protected-mode",
            yes_no(
                state
                    .protected_mode
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
        ),
        ("tls-port", c.tls_port.to_string()),
        ("tls-cluster", yes_no(c.tls_cluster)),
        (
            "tls-auth-clients",
            match c.tls_auth_clients {
                crate::config::TlsAuthClients::Yes => "yes",
                crate::config::TlsAuthClients::Optional => "optional",
                crate::config::TlsAuthClients::No => "no",
            }
            .into(),
        ),
        ("appendonly", "yes".into()),
        ("appendfsync", "always".into()),
        ("save", String::new()),
        ("maxmemory", c.maxmemory.to_string()),
        (
            "client-output-buffer-limit",
            format!(
                "normal 0 0 0 slave 0 0 0 pubsub {} 0 0",
                c.client_output_buffer_limit_pubsub_bytes
            ),
        ),
        ("maxmemory-policy", "noeviction".into()),
        ("proto-max-bulk-len", "536870912".into()),
        ("client-query-buffer-limit", "1073741824".into()),
        ("timeout", "0".into()),
        ("dir", c.data_dir.display().to_string()),
        ("cluster-enabled", "no".into()),
        (
            "slowlog-log-slower-than",
            state.slowlog.slower_than_us().to_string(),
        ),
        ("slowlog-max-len", state.slowlog.max_len().to_string()),
        ("latency-monitor-threshold", "0".into()),
        ("busy-reply-threshold", state.scripts.busy_ms().to_string()),
        ("lua-time-limit", state.scripts.busy_ms().to_string()),
    ]
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.into()
}

fn config_get(state: &NodeState, patterns: &[Bytes]) -> Reply {
    let params = config_params(state);
    let mut pairs = Vec::new();
    for (name, value) in &params {
        let lowered = name.as_bytes();
        if patterns.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            glob::matches(&p, lowered)
        }) {
            pairs.push((bulk(*name), bulk(value.clone())));
        }
    }
    Reply::Map(pairs)
}

fn config_set(state: &NodeState, args: &[Bytes]) -> Reply {
    let name = args
        .first()
        .map(|a| a.to_ascii_lowercase())
        .unwrap_or_default();
    let known = config_params(state)
        .iter()
        .any(|(p, _)| p.as_bytes() == name.as_slice());
    let name = String::from_utf8_lossy(&name).into_owned();
    // The settings that take effect at run time.
    if let [_, value] = args
        && name == "protected-mode"
    {
        return match value.to_ascii_lowercase().as_slice() {
            b"yes" | b"no" => {
                state.protected_mode.store(
                    value.eq_ignore_ascii_case(b"yes"),
                    std::sync::atomic::Ordering::Relaxed,
                );
                Reply::ok()
            }
            _ => Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be 'yes' or 'no'"
            )),
        };
    }
    if let [_, value] = args {
        let parsed = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<i64>().ok());
        match (name.as_str(), parsed) {
            ("slowlog-log-slower-than", Some(micros)) => {
                state.slowlog.set_slower_than_us(micros);
                return Reply::ok();
            }
            ("slowlog-max-len", Some(len)) if len >= 0 => {
                state.slowlog.set_max_len(len.unsigned_abs());
                return Reply::ok();
            }
            ("busy-reply-threshold" | "lua-time-limit", Some(ms)) if ms >= 0 => {
                state.scripts.set_busy_ms(ms.unsigned_abs());
                return Reply::ok();
            }
            (
                "slowlog-log-slower-than"
                | "slowlog-max-len"
                | "busy-reply-threshold"
                | "lua-time-limit",
                _,
            ) => {
                return Reply::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
                ));
            }
            _ => {}
        }
    }
    if known {
        Reply::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
        ))
    } else {
        Reply::error(format!(
            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
        ))
    }
}

pub fn count_command(state: &NodeState) {
    Stats::add(&state.stats.commands_processed, 1);
}
