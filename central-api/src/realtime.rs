//! Live delivery across instances: chat messages and notifications are written to
//! PostgreSQL and announced with `pg_notify` in the same transaction; every instance keeps
//! one dedicated connection that `LISTEN`s ([`crate::db::listen`], reconnecting with
//! backoff) and hands what it hears to its [`Hub`], which forwards it to the WebSocket
//! clients connected to this instance.
//!
//! The notify payload carries ids only (`room_id:message_id`, `user_id:notification_id`),
//! far below PostgreSQL's 8000-byte limit; the hub reads the row once per event, and only
//! when a local client wants it. After the LISTEN connection comes back, the hub tells
//! every client to catch up from the last id it sent ([`Event::Resync`]), so nothing
//! posted meanwhile is lost (notifications likewise, a page of 100 at most: the rest stay
//! listed by `GET /api/notifications/`).
//!
//! Every client has a bounded queue ([`CLIENT_QUEUE`]); a client that falls that far
//! behind is dropped (its socket is closed with code 1013 and it reconnects and catches
//! up), so one slow reader never holds up the others.
//!
//! The same connection hears revocations ([`crate::revocation::AUTH_CHANNEL`], payload
//! `user_id`): the instance forgets what it remembered about the user's tokens, and the
//! user's live clients check their token again ([`Event::Revoked`]). The connection tells
//! [`crate::revocation::Revocations`] when it is listening and when it is lost, so that
//! nothing announced while it was away is missed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::db::Listened;
use crate::revocation::AUTH_CHANNEL;
use crate::state::AppState;

/// The channel chat messages are announced on: payload `room_id:message_id`.
pub const CHAT_CHANNEL: &str = "central_api_chat";
/// The channel notifications are announced on: payload `user_id:notification_id`.
pub const NOTIFICATION_CHANNEL: &str = "central_api_notification";
/// Events a client may have waiting before it is dropped as too slow.
pub const CLIENT_QUEUE: usize = 256;
/// Notifications waiting between the LISTEN connection and the hub.
const LISTEN_QUEUE: usize = 1024;
/// How often watched sites are checked for congestion.
pub const CONGESTION_SCAN: Duration = Duration::from_secs(60);
/// How often the traffic roll-ups (`traffic_15m`, `traffic_1h`) catch up with the batches
/// committed since (central-sync's `refresh_pending`: exact, idempotent, serialised by an
/// advisory lock, so every instance may run it and a `central-sync rollup` timer may too).
pub const ROLLUP_EVERY: Duration = Duration::from_secs(60);

/// What a client's session receives.
#[derive(Debug, Clone)]
pub enum Event {
    /// A chat message (the frame to send, ready-made).
    Chat {
        room_id: i64,
        id: i64,
        frame: Utf8Bytes,
    },
    Notification {
        id: i64,
        frame: Utf8Bytes,
    },
    /// The LISTEN connection was lost and is back: catch up from the last id sent (and
    /// check the token again: a revocation may have gone unheard).
    Resync,
    /// The client's user had their tokens revoked (or was disabled or deleted), maybe
    /// before the client's token was issued: check it again.
    Revoked,
}

#[derive(Debug)]
struct Client {
    user_id: i64,
    rooms: HashSet<i64>,
    tx: mpsc::Sender<Event>,
}

/// The clients of this instance and what they listen to.
#[derive(Debug, Default)]
pub struct Hub {
    clients: Mutex<HashMap<u64, Client>>,
    next_id: AtomicU64,
    /// Cancelled at shutdown: the listener stops, sessions close their sockets.
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A client's registration; dropping it unregisters the client.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    pub id: u64,
    pub rx: mpsc::Receiver<Event>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
        metrics::gauge!("central_api_ws_clients").decrement(1.0);
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Client>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a client of `user_id` (it receives that user's notifications).
    pub fn subscribe(self: &Arc<Self>, user_id: i64) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        self.lock().insert(
            id,
            Client {
                user_id,
                rooms: HashSet::new(),
                tx,
            },
        );
        metrics::gauge!("central_api_ws_clients").increment(1.0);
        Subscription {
            hub: self.clone(),
            id,
            rx,
        }
    }

    /// Adds `room_id` to what client `id` receives (access already checked).
    pub fn join(&self, id: u64, room_id: i64) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.rooms.insert(room_id);
        }
    }

    /// How many clients this instance has.
    pub fn clients(&self) -> usize {
        self.lock().len()
    }

    fn wants(&self, pred: impl Fn(&Client) -> bool) -> bool {
        self.lock().values().any(pred)
    }

    /// Queues `event` for every client `pred` selects; drops clients whose queue is full.
    fn dispatch(&self, pred: impl Fn(&Client) -> bool, event: &Event) {
        let mut clients = self.lock();
        let mut gone = Vec::new();
        for (id, c) in clients.iter().filter(|(_, c)| pred(c)) {
            match c.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("central_api_ws_dropped_total", "reason" => "slow")
                        .increment(1);
                    gone.push(*id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
            }
        }
        for id in gone {
            // The session sees its queue closed and hangs up.
            clients.remove(&id);
        }
    }

    /// Starts the LISTEN connection, the dispatcher, the congestion scan and the roll-up
    /// refresh. They stop
    /// when [`Hub::shutdown`] is cancelled; [`Hub::drain`] waits for them.
    pub fn start(state: &AppState) {
        let hub = state.hub.clone();
        let (tx, rx) = mpsc::channel(LISTEN_QUEUE);
        hub.tasks.spawn(listen_loop(state.clone(), tx));
        hub.tasks.spawn(dispatch_loop(state.clone(), rx));
        hub.tasks.spawn(periodic(
            state.clone(),
            CONGESTION_SCAN,
            "congestion scan",
            |mut db| async move {
                crate::routes::notifications::scan_congestion(&mut db)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        ));
        hub.tasks.spawn(periodic(
            state.clone(),
            ROLLUP_EVERY,
            "traffic roll-up refresh",
            |mut db| async move {
                central_sync::rollup::refresh_pending(&mut db)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        ));
        hub.tasks.close();
    }

    /// Stops the background tasks and waits for them.
    pub async fn drain(&self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }

    /// Spawns a session-scoped task the hub drains at shutdown.
    pub fn track<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }
}

async fn listen_loop(state: AppState, tx: mpsc::Sender<Listened>) {
    let shutdown = state.hub.shutdown.clone();
    const FIRST_RETRY: Duration = Duration::from_millis(250);
    let mut backoff = FIRST_RETRY;
    loop {
        let started = tokio::time::Instant::now();
        let revocations = state.revocations.clone();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = crate::db::listen(
                &state.config,
                &[CHAT_CHANNEL, NOTIFICATION_CHANNEL, AUTH_CHANNEL],
                &tx,
                move || revocations.listener_ready(),
            ) => r,
        };
        // Deaf from here until the next connection listens: tokens are checked against
        // the database meanwhile.
        state.revocations.listener_lost();
        // A connection that held for a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = FIRST_RETRY;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "LISTEN connection lost"
                );
                metrics::counter!("central_api_listen_reconnects_total").increment(1);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn dispatch_loop(state: AppState, mut rx: mpsc::Receiver<Listened>) {
    let hub = state.hub.clone();
    loop {
        let heard = tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            heard = rx.recv() => match heard {
                Some(h) => h,
                None => return,
            },
        };
        let result = match heard {
            Listened::Listening => {
                hub.dispatch(|_| true, &Event::Resync);
                Ok(())
            }
            Listened::Notification(n) => handle(&state, n.channel(), n.payload()).await,
        };
        if let Err(e) = result {
            tracing::warn!(
                error = format!("{e:#}"),
                "live delivery: cannot read an announced row"
            );
        }
    }
}

/// Parses `a:b` into two ids.
fn ids(payload: &str) -> Option<(i64, i64)> {
    let (a, b) = payload.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

async fn handle(state: &AppState, channel: &str, payload: &str) -> anyhow::Result<()> {
    if channel == AUTH_CHANNEL {
        let Ok(user_id) = payload.parse::<i64>() else {
            // Unparseable: this instance cannot tell whose memory is stale; forget all.
            state.revocations.forget_all();
            anyhow::bail!("unexpected payload on {channel}");
        };
        state.revocations.forget(user_id);
        state
            .hub
            .dispatch(|c| c.user_id == user_id, &Event::Revoked);
        return Ok(());
    }
    let Some((owner, id)) = ids(payload) else {
        anyhow::bail!("unexpected payload on {channel}");
    };
    let hub = &state.hub;
    match channel {
        CHAT_CHANNEL => {
            if !hub.wants(|c| c.rooms.contains(&owner)) {
                return Ok(());
            }
            let db = state.db().await?;
            if let Some(m) = crate::routes::chat::fetch_message(&db, id).await? {
                let frame = crate::routes::chat::message_frame(&m);
                hub.dispatch(
                    |c| c.rooms.contains(&owner),
                    &Event::Chat {
                        room_id: owner,
                        id,
                        frame,
                    },
                );
            }
        }
        NOTIFICATION_CHANNEL => {
            if !hub.wants(|c| c.user_id == owner) {
                return Ok(());
            }
            let db = state.db().await?;
            if let Some(n) = crate::routes::notifications::fetch(&db, owner, id).await? {
                let frame = crate::routes::notifications::frame(&n);
                hub.dispatch(
                    |c| c.user_id == owner,
                    &Event::Notification { id: n.id, frame },
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs `job` on a pooled connection every `period` until the hub shuts down; a failure is
/// logged and the next period tries again.
async fn periodic<F, Fut>(state: AppState, period: Duration, what: &'static str, job: F)
where
    F: Fn(deadpool_postgres::Object) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let shutdown = state.hub.shutdown.clone();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = match state.db().await {
            Ok(db) => job(db).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "{what} failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_ids() {
        assert_eq!(ids("12:345"), Some((12, 345)));
        assert_eq!(ids("12"), None);
        assert_eq!(ids("x:1"), None);
    }

    #[tokio::test]
    async fn a_full_client_is_dropped_and_others_still_get_events() {
        let hub = Arc::new(Hub::default());
        let mut slow = hub.subscribe(1);
        let mut fast = hub.subscribe(2);
        let event = Event::Notification {
            id: 1,
            frame: Utf8Bytes::from_static("{}"),
        };
        for _ in 0..CLIENT_QUEUE {
            hub.dispatch(|_| true, &event);
            assert!(fast.rx.try_recv().is_ok());
        }
        assert_eq!(hub.clients(), 2);
        hub.dispatch(|_| true, &event);
        assert_eq!(hub.clients(), 1, "the slow client is dropped");
        assert!(fast.rx.try_recv().is_ok(), "the other still gets it");
        let mut n = 0;
        while slow.rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(
            n, CLIENT_QUEUE,
            "the slow client's queue ends after what it had"
        );
    }
}
