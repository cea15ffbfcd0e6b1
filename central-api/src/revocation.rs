//! Which access tokens still stand: each instance's memory of its users' token
//! generations ([`Revocations`]), kept fresh by `LISTEN`.
//!
//! An access token names the `token_generation` its user had when it was issued; the
//! database raises the generation (triggers of migration 3) when the role, patrol,
//! password or disabled flag changes or the user logs out everywhere, and announces it,
//! and a deletion, on [`AUTH_CHANNEL`] in the same transaction. A token stands while its
//! user exists, is not disabled and is still at that generation.
//!
//! Reading the user's row on every request would cost a round trip each, so each instance
//! remembers what it read, per user, and forgets a user when the channel announces a
//! change (the next request reads the row again). The memory is trusted only while the
//! `LISTEN` connection is up ([`crate::realtime`] drives it):
//!
//! - when the connection is lost, everything is forgotten and, until it is back, every
//!   check reads the database: nothing announced meanwhile can be missed;
//! - when it is back (listening again), the memory starts empty;
//! - the instance that makes a change forgets the user right after its commit, without
//!   waiting for its own announcement, so its next request already sees the change;
//! - a read that raced an announcement or a reconnect is used for its request but not
//!   remembered (an epoch counter tells), so a stale row cannot settle in;
//! - an entry is trusted for [`ENTRY_TTL`] at most, which bounds how long a connection
//!   that died silently (no error yet) could hide a revocation;
//! - at most [`CAPACITY`] users are remembered (expired ones go first, then any): the
//!   user table of a control room is far smaller, and a miss only costs one read.
//!
//! This module is the memory and the verdict; it does no I/O (the caller passes the
//! time and does the read: [`crate::auth::authenticate`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The channel the database announces revocations on: payload, the user id.
pub const AUTH_CHANNEL: &str = "central_api_auth";
/// Users remembered per instance.
pub const CAPACITY: usize = 10_000;
/// How long a remembered user is trusted without being read again.
pub const ENTRY_TTL: Duration = Duration::from_secs(60);

/// What the database says about a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active {
        generation: i64,
    },
    Disabled,
    /// No such user (deleted).
    Gone,
}

/// Whether a token of some generation stands against a [`Standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Issued under an older generation.
    Revoked,
    Disabled,
    Gone,
    /// Issued under a newer generation than the one known: the memory is behind (another
    /// instance issued the token after a change not yet announced here); read again. If
    /// the database itself is behind, the token is refused ([`Verdict::refusal`]).
    Newer,
}

impl Standing {
    pub fn judge(self, token_generation: i64) -> Verdict {
        match self {
            Standing::Active { generation } if token_generation == generation => Verdict::Valid,
            Standing::Active { generation } if token_generation < generation => Verdict::Revoked,
            Standing::Active { .. } => Verdict::Newer,
            Standing::Disabled => Verdict::Disabled,
            Standing::Gone => Verdict::Gone,
        }
    }
}

impl Verdict {
    /// A metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Revoked => "revoked",
            Verdict::Newer => "newer",
            Verdict::Disabled => "disabled",
            Verdict::Gone => "gone",
        }
    }

    /// Why a token is refused, for the client; `None` when it stands.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            Verdict::Valid => None,
            Verdict::Revoked | Verdict::Newer => Some(
                "the access token was revoked (the password, role or patrol changed, or the \
                 user logged out everywhere): log in again",
            ),
            Verdict::Disabled => Some("the account is disabled"),
            Verdict::Gone => Some("the account no longer exists"),
        }
    }
}

/// Identifies a moment of the memory: a read made at one epoch may be remembered only if
/// nothing was announced or reconnected since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

#[derive(Debug, Clone, Copy)]
struct Entry {
    standing: Standing,
    read_at: Instant,
}

#[derive(Debug, Default)]
struct Memory {
    /// The LISTEN connection is up: announcements arrive.
    listening: bool,
    epoch: u64,
    users: HashMap<i64, Entry>,
}

/// One instance's memory of its users' standing. Cheap: one short lock per check, never
/// held across an await.
#[derive(Debug, Default)]
pub struct Revocations {
    memory: Mutex<Memory>,
}

impl Revocations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // Every update leaves the memory consistent, so a panic elsewhere cannot spoil it.
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is remembered about `user_id` (`None`: read the database), and the epoch to
    /// pass to [`remember`](Self::remember) with what is read.
    pub fn recall(&self, user_id: i64, now: Instant) -> (Option<Standing>, Epoch) {
        let m = self.lock();
        let standing = m
            .users
            .get(&user_id)
            .filter(|e| m.listening && now.saturating_duration_since(e.read_at) < ENTRY_TTL)
            .map(|e| e.standing);
        (standing, Epoch(m.epoch))
    }

    /// Remembers what was read about `user_id` since [`recall`](Self::recall) returned
    /// `epoch`, unless that read may be stale (an announcement or a reconnect came
    /// between) or nothing would keep it fresh (not listening).
    pub fn remember(&self, user_id: i64, standing: Standing, epoch: Epoch, now: Instant) {
        let mut m = self.lock();
        if !m.listening || m.epoch != epoch.0 {
            return;
        }
        if m.users.len() >= CAPACITY && !m.users.contains_key(&user_id) {
            m.users
                .retain(|_, e| now.saturating_duration_since(e.read_at) < ENTRY_TTL);
            if m.users.len() >= CAPACITY {
                // Still full of live entries: drop any one; its user costs a read later.
                if let Some(&victim) = m.users.keys().next() {
                    m.users.remove(&victim);
                }
            }
        }
        m.users.insert(
            user_id,
            Entry {
                standing,
                read_at: now,
            },
        );
    }

    /// The database announced a change of `user_id`.
    pub fn forget(&self, user_id: i64) {
        let mut m = self.lock();
        m.epoch += 1;
        m.users.remove(&user_id);
    }

    /// An announcement that names no user was heard: forget everyone.
    pub fn forget_all(&self) {
        let mut m = self.lock();
        m.epoch += 1;
        m.users.clear();
    }

    /// The LISTEN connection is down: announcements may be missed from now on.
    pub fn listener_lost(&self) {
        let mut m = self.lock();
        m.listening = false;
        m.epoch += 1;
        m.users.clear();
    }

    /// The LISTEN connection is (back) up: what changes from now on is announced. What was
    /// read before may have changed unannounced, so the memory starts empty.
    pub fn listener_ready(&self) {
        let mut m = self.lock();
        m.listening = true;
        m.epoch += 1;
        m.users.clear();
    }

    /// How many users are remembered.
    pub fn len(&self) -> usize {
        self.lock().users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVE: Standing = Standing::Active { generation: 3 };

    #[test]
    fn verdicts() {
        assert_eq!(ACTIVE.judge(3), Verdict::Valid);
        assert_eq!(ACTIVE.judge(2), Verdict::Revoked);
        assert_eq!(ACTIVE.judge(4), Verdict::Newer);
        assert_eq!(Standing::Disabled.judge(3), Verdict::Disabled);
        assert_eq!(Standing::Gone.judge(3), Verdict::Gone);
        assert_eq!(Verdict::Valid.refusal(), None);
        for v in [
            Verdict::Revoked,
            Verdict::Newer,
            Verdict::Disabled,
            Verdict::Gone,
        ] {
            assert!(v.refusal().is_some(), "{v:?}");
        }
    }

    #[test]
    fn nothing_is_remembered_until_listening() {
        let r = Revocations::default();
        let now = Instant::now();
        let (seen, epoch) = r.recall(1, now);
        assert_eq!(seen, None);
        r.remember(1, ACTIVE, epoch, now);
        assert!(r.is_empty(), "not listening: every check reads");
        r.listener_ready();
        let (_, epoch) = r.recall(1, now);
        r.remember(1, ACTIVE, epoch, now);
        assert_eq!(r.recall(1, now).0, Some(ACTIVE));
    }

    #[test]
    fn an_announcement_forgets_the_user_and_spoils_reads_in_flight() {
        let r = Revocations::default();
        r.listener_ready();
        let now = Instant::now();
        let (_, before) = r.recall(1, now);
        r.remember(1, ACTIVE, before, now);
        // Read of user 2 in flight while user 1's change is announced.
        let (_, in_flight) = r.recall(2, now);
        r.forget(1);
        assert_eq!(r.recall(1, now).0, None);
        r.remember(2, ACTIVE, in_flight, now);
        assert_eq!(r.recall(2, now).0, None, "a read that raced is not kept");
    }

    #[test]
    fn a_lost_connection_forgets_everything_until_it_is_back() {
        let r = Revocations::default();
        r.listener_ready();
        let now = Instant::now();
        let (_, epoch) = r.recall(1, now);
        r.remember(1, ACTIVE, epoch, now);
        r.listener_lost();
        assert_eq!(r.recall(1, now).0, None);
        let (_, during) = r.recall(1, now);
        r.remember(1, ACTIVE, during, now);
        assert_eq!(r.recall(1, now).0, None, "not kept while deaf");
        // A read begun while deaf and finished after the reconnect may predate a change
        // that was never announced: not kept either.
        r.listener_ready();
        r.remember(1, ACTIVE, during, now);
        assert!(r.is_empty());
    }

    #[test]
    fn entries_expire_and_the_memory_is_bounded() {
        let r = Revocations::default();
        r.listener_ready();
        let t0 = Instant::now();
        let (_, epoch) = r.recall(0, t0);
        r.remember(0, ACTIVE, epoch, t0);
        assert_eq!(r.recall(0, t0 + ENTRY_TTL).0, None, "expired");
        for id in 1..=i64::try_from(CAPACITY).unwrap() + 10 {
            r.remember(id, ACTIVE, epoch, t0 + ENTRY_TTL);
        }
        assert_eq!(r.len(), CAPACITY, "expired entries first, then any");
        let last = i64::try_from(CAPACITY).unwrap() + 10;
        assert_eq!(r.recall(last, t0 + ENTRY_TTL).0, Some(ACTIVE));
    }
}
