//! Commit notices on PostgreSQL: after a commit that stamps versions, the unit says so on a
//! channel of its SA's database (`NOTIFY hs_commits`), and every unit of the SA listens. A
//! long poll waiting at one unit then answers a write made through another unit at once,
//! instead of at its next look into the database.
//!
//! The notice goes out after the commit, as a statement of its own, never inside the writing
//! transaction: PostgreSQL queues a transaction's notices under one lock held through its
//! commit, which would serialise every notifying commit of the database. A notice carries no
//! data, only who sent it, and notices coalesce: while one is on its way, any number of
//! further commits add one more, not one each. A notice that is lost (a unit dying between
//! its commit and its notice, a listener reconnecting) only delays a long poll until its next
//! look into the database, which the feed still makes, only less often while notices arrive.
//!
//! SQLite has no notices: a long poll there looks into the database on a short timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::postgres::PgListener;

use super::Store;

/// The channel, one per database (PostgreSQL delivers a notice only within its database).
const CHANNEL: &str = "hs_commits";
/// How long a listener waits before connecting again after losing its connection.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// A listener that heard nothing for this long checks that its connection still answers: a
/// connection that died without a word (the server's host gone, a dropped idle flow) would
/// otherwise leave it "live" and every long poll looking only at the 5 s safety net.
const QUIET_CHECK: Duration = Duration::from_secs(30);
/// How long that check, and sending one notice, may take.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(5);

/// What a store needs to send notices and to know whether it hears them.
#[derive(Debug)]
pub(super) struct CommitNotices {
    /// Where the listener connects (the pool's own URL).
    url: String,
    /// This store's mark on its notices, so its listener can skip its own.
    sender: String,
    /// A commit happened whose notice has not been sent yet.
    pending: AtomicBool,
    /// A task is sending notices right now.
    sending: AtomicBool,
    /// The listener is connected and listening: notices from other units arrive.
    live: AtomicBool,
}

impl CommitNotices {
    pub(super) fn new(url: String) -> Arc<Self> {
        let mut random = [0_u8; 8];
        let sender = if getrandom::fill(&mut random).is_ok() {
            format!("{:016x}", u64::from_le_bytes(random))
        } else {
            // Every unit in a container may be pid 1: the clock tells them apart.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            format!("pid{}-{now}", std::process::id())
        };
        Arc::new(Self {
            url,
            sender,
            pending: AtomicBool::new(false),
            sending: AtomicBool::new(false),
            live: AtomicBool::new(false),
        })
    }

    /// Says that a commit happened; returns at once (the notice goes out from a short task).
    pub(super) fn announce(self: &Arc<Self>, pool: &AnyPool) {
        self.pending.store(true, Ordering::SeqCst);
        if self.sending.swap(true, Ordering::SeqCst) {
            // The task sending now sees `pending` before it stops.
            return;
        }
        let (notices, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            loop {
                while notices.pending.swap(false, Ordering::SeqCst) {
                    // Bounded, so that one notice stuck on a dead connection cannot keep this
                    // unit silent: `sending` is cleared below whatever happened.
                    if tokio::time::timeout(ROUND_TRIP_LIMIT, notices.send(&pool))
                        .await
                        .is_err()
                    {
                        tracing::debug!("a commit notice took too long; given up");
                    }
                }
                notices.sending.store(false, Ordering::SeqCst);
                // A commit that came between the last look at `pending` and the line above
                // found `sending` still set and left its notice to this task.
                if !notices.pending.load(Ordering::SeqCst)
                    || notices.sending.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        });
    }

    async fn send(&self, pool: &AnyPool) {
        // Autocommit, on its own: a transaction that writes no WAL before its commit record is
        // not flushed synchronously, so a notice should cost a round trip, not an fsync (not
        // measured apart; durable PUTs kept their rate, the bench's figure 3).
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&self.sender)
            .execute(pool)
            .await;
        match sent {
            Ok(_) => metrics::counter!("hiscale_commit_notices_total", "direction" => "sent")
                .increment(1),
            Err(error) => tracing::debug!(%error, "could not send a commit notice"),
        }
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        metrics::gauge!("hiscale_commit_notices_live").set(if live { 1.0 } else { 0.0 });
    }
}

impl Store {
    /// Tells the other units of this SA that a commit stamped new versions (PostgreSQL).
    pub(super) fn announce_commit(&self) {
        if let Some(notices) = &self.notices {
            notices.announce(&self.pool);
        }
    }

    /// Whether commits through other units are heard as they happen: a listener of this store
    /// is connected ([`Store::listen_for_commits`]). Never on SQLite.
    pub fn hears_commits(&self) -> bool {
        self.notices
            .as_ref()
            .is_some_and(|notices| notices.live.load(Ordering::SeqCst))
    }

    /// Listens for other units' commit notices until `stop`, calling `heard` for each, and
    /// once after every (re)connection, since notices sent while the listener was away are
    /// lost. Returns at once on SQLite.
    pub async fn listen_for_commits(
        &self,
        heard: impl Fn(),
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(notices) = self.notices.clone() else {
            return;
        };
        loop {
            tokio::select! {
                () = listen(&notices, &heard) => {}
                _ = stop.changed() => break,
            }
            notices.set_live(false);
            heard();
            tokio::select! {
                () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                _ = stop.changed() => break,
            }
        }
        notices.set_live(false);
    }
}

/// One connection's worth of listening; returns when the connection is lost.
async fn listen(notices: &CommitNotices, heard: &impl Fn()) {
    let mut listener = match PgListener::connect(&notices.url).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "cannot connect to hear other units' commits");
            return;
        }
    };
    if let Err(error) = listener.listen(CHANNEL).await {
        tracing::warn!(%error, "cannot listen for other units' commits");
        return;
    }
    notices.set_live(true);
    heard();
    loop {
        // `try_recv` reports a lost connection (`Ok(None)`) instead of reconnecting silently,
        // so the gap is known and covered.
        let Ok(received) = tokio::time::timeout(QUIET_CHECK, listener.try_recv()).await else {
            let answered = tokio::time::timeout(
                ROUND_TRIP_LIMIT,
                sqlx::query("SELECT 1").execute(&mut listener),
            )
            .await;
            if !matches!(answered, Ok(Ok(_))) {
                tracing::warn!("the connection that hears other units' commits stopped answering");
                return;
            }
            continue;
        };
        match received {
            Ok(Some(notice)) if notice.payload() == notices.sender => {}
            Ok(Some(_)) => {
                metrics::counter!("hiscale_commit_notices_total", "direction" => "received")
                    .increment(1);
                heard();
            }
            Ok(None) => {
                tracing::warn!("lost the connection that hears other units' commits");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "hearing other units' commits failed");
                return;
            }
        }
    }
}
