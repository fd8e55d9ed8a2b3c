//! Sessions that end before their `exp`: a small collection, `revocations`, owned by the SA
//! that signs sessions (login) and copied by every other SA like any copied data, so a logout
//! or a change of credentials reaches every unit through the feed it already polls.
//!
//! One resource per revocation, aspect `revocation`:
//!
//! * a logout: `{"customer", "sid", "exp"}` — the session with that id is over;
//! * a change of credentials (password, login, the customer deleted):
//!   `{"customer", "before", "exp"}` — every session of that customer signed in against
//!   credentials of a version below `before` (the token's `cv`) is over.
//!
//! `exp` is when no token the entry could refuse is valid any more: the signer deletes the
//! entry then (its tombstone travels and is purged like any other), so the collection holds at
//! most the revocations of one token lifetime.
//!
//! Each unit keeps the entries in memory ([`Revocations`]), read from its own store every
//! [`REFRESH`]: the copy's cursor (the owner's horizon at the signer) bounds what it reads,
//! so an entry is seen once its chunk is committed. Checking a session costs two hash
//! lookups, no query.
//!
//! The framework declares the collection itself: the signer (a unit with a signing key) owns
//! it, a unit whose configuration names `sessions.revocations_from` copies it; an SA's code
//! declares nothing. The topology fills in that source, and the signer's grants, for every SA
//! of the signer's datacenter.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::http::{ApiError, AppState};
use crate::model::{Collection, Role, ServiceArea};
use crate::session::Claims;
use crate::store::{self, AspectEdit, Change, Store, Target, unix_now};
use crate::version::{ResourceId, Version};

/// The collection's name, at the signer and in every copy.
pub const COLLECTION: &str = "revocations";
/// Its only aspect.
pub const ASPECT: &str = "revocation";
/// The selector a copy polls and the signer grants.
pub const SELECTOR: &str = "~revocation";
/// How often a unit reads new revocations from its store.
pub const REFRESH: Duration = Duration::from_millis(250);
/// How often the signer looks for entries past their `exp`.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Entries read per query.
const BATCH: usize = 1000;

/// The collection as the signer owns it and every other SA copies it.
pub fn collection() -> Collection {
    Collection::new(COLLECTION, ASPECT)
        .document(ASPECT, &[])
        // Revocations are not master data: a rolled-back signer loses the ones after its
        // backup (the units' memory and the copies keep them until the copies re-read).
        .not_refilled()
        // Written by the signer's own code only (a logout, changed credentials, and the
        // deletion after `exp`): a caller's DELETE before `exp` would revive the session.
        .read_only_to_callers()
}

/// `sa` with the revocations collection this unit's configuration implies: owned when it
/// signs sessions, copied from `revocations_from` otherwise (unless the SA declares it).
pub fn declare(sa: ServiceArea, signs: bool, revocations_from: Option<&str>) -> ServiceArea {
    if sa.collection(COLLECTION).is_some() {
        return sa;
    }
    match (signs, revocations_from) {
        (true, _) => sa.owns(collection()),
        (false, Some(owner)) if owner != sa.name() => sa.copies(owner, collection()),
        _ => sa,
    }
}

/// One revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The customer whose session(s) it ends.
    pub customer: String,
    /// One session, by id (a logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Every session signed in against credentials below this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// After this (unix seconds) no token the entry refuses is valid: it may go.
    pub exp: i64,
}

/// A unit's view of the revocations in its store.
#[derive(Debug, Default)]
pub struct Revocations {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Read up to here.
    after: i64,
    entries: HashMap<String, Entry>,
    sids: HashSet<String>,
    /// Per customer, the greatest `before`.
    before: HashMap<String, i64>,
}

impl State {
    fn put(&mut self, id: &str, entry: Option<Entry>) {
        if let Some(old) = self.entries.remove(id) {
            if let Some(sid) = &old.sid {
                self.sids.remove(sid);
            }
            if old.before.is_some() {
                self.before.remove(&old.customer);
                let greatest = self
                    .entries
                    .values()
                    .filter(|other| other.customer == old.customer)
                    .filter_map(|other| other.before)
                    .max();
                if let Some(greatest) = greatest {
                    self.before.insert(old.customer.clone(), greatest);
                }
            }
        }
        if let Some(entry) = entry {
            if let Some(sid) = &entry.sid {
                self.sids.insert(sid.clone());
            }
            if let Some(before) = entry.before {
                let slot = self.before.entry(entry.customer.clone()).or_insert(before);
                *slot = (*slot).max(before);
            }
            self.entries.insert(id.to_owned(), entry);
        }
    }
}

impl Revocations {
    /// Whether the session `claims` describes has been ended.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        let state = match self.state.read() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.sids.contains(&claims.sid)
            || state
                .before
                .get(&claims.sub)
                .is_some_and(|before| claims.cv.unwrap_or(0) < *before)
    }

    /// How many entries this unit holds.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        match self.state.read() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads what is new in the store: up to the horizon at the owner, up to the cursor in a
    /// copy (a chunk and its cursor commit together).
    pub async fn refresh(&self, store: &Store, owned: bool) -> Result<(), store::Error> {
        loop {
            let until = if owned {
                store.horizon(COLLECTION).await?
            } else {
                store.cursor(COLLECTION).await?
            };
            let after = Version::new(self.read().after).unwrap_or(Version::ZERO);
            let batch = store
                .read_changes(COLLECTION, after, until, &[ASPECT.to_owned()], BATCH)
                .await?;
            let mut state = self.write();
            for item in &batch.items {
                let live = (!item.deleted)
                    .then(|| item.aspects.iter().find(|aspect| aspect.name == ASPECT))
                    .flatten()
                    .filter(|aspect| !aspect.deleted)
                    .and_then(|aspect| aspect.body.as_deref())
                    .and_then(|body| serde_json::from_str::<Entry>(body).ok());
                state.put(item.id.as_str(), live);
            }
            state.after = state.after.max(batch.version.get());
            if !batch.more {
                return Ok(());
            }
        }
    }

    /// The ids of entries past their `exp` (by `now`).
    fn expired(&self, now: i64) -> Vec<String> {
        self.read()
            .entries
            .iter()
            .filter(|(_, entry)| entry.exp < now)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Ends the session `claims` describes: stores the revocation at the signer (which must own
/// the collection) and refuses the session at this unit at once.
pub async fn revoke_session(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    revoke(
        state,
        Entry {
            customer: claims.sub.clone(),
            sid: Some(claims.sid.clone()),
            before: None,
            exp: claims.exp,
        },
    )
    .await
}

/// Stores `entry` as a new revocation and takes it into this unit's memory.
pub async fn revoke(state: &AppState, entry: Entry) -> Result<(), ApiError> {
    let body = serde_json::to_string(&entry).map_err(|error| {
        ApiError::internal(format!("a revocation could not be written: {error}"))
    })?;
    let committed = state
        .store()
        .commit(
            COLLECTION,
            vec![Change {
                target: Target::Create,
                precondition: None,
                edits: vec![AspectEdit {
                    aspect: ASPECT.to_owned(),
                    body: Some(body),
                    unique_keys: Vec::new(),
                }],
            }],
        )
        .await?;
    state.notify_change();
    if let Some((id, _)) = committed.changes.first() {
        state.revocations().write().put(id.as_str(), Some(entry));
    }
    Ok(())
}

/// Keeps this unit's revocations current until `stop`; at the signer also ends the sessions
/// of changed credentials and deletes entries past their `exp`.
pub(crate) async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(collection) = state.service_area().collection(COLLECTION) else {
        return;
    };
    let owned = *collection.role() == Role::Owner;
    let mut failing = false;
    let mut last_purge = Instant::now();
    loop {
        let mut result = state.revocations().refresh(state.store(), owned).await;
        if owned && result.is_ok() {
            result = end_changed_credentials(&state).await;
        }
        if owned && result.is_ok() && last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            purge(&state).await;
        }
        match result {
            Ok(()) => failing = false,
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot read the session revocations; keeping the ones read");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            _ = stop.changed() => return,
        }
    }
}

/// At the signer: every change of the credentials the SA names
/// ([`ServiceArea::ends_sessions_when_changed`]) after the job's position revokes the
/// customer's sessions signed in against older credentials. The resource's creation is no
/// change (its aspect's version is the resource id).
async fn end_changed_credentials(state: &AppState) -> Result<(), store::Error> {
    let Some((collection, aspect)) = state.service_area().session_credentials() else {
        return Ok(());
    };
    let Some(declared) = state.service_area().collection(collection) else {
        return Ok(());
    };
    let store = state.store();
    let job = format!("end-sessions:{collection}:{aspect}");
    loop {
        let after = store.job_position(&job).await?;
        let until = match declared.role() {
            Role::Owner => store.horizon(collection).await?,
            Role::Copy { .. } => store.cursor(collection).await?,
        };
        let batch = store
            .read_changes(collection, after, until, &[aspect.to_owned()], BATCH)
            .await?;
        for item in &batch.items {
            let created = Version::parse(item.id.as_str());
            for changed in item.aspects.iter().filter(|stored| stored.name == aspect) {
                if Some(changed.version) == created {
                    continue;
                }
                let entry = Entry {
                    customer: item.id.to_string(),
                    sid: None,
                    before: Some(changed.version.get()),
                    exp: unix_now().saturating_add(state.session_ttl_secs()),
                };
                if let Err(error) = revoke(state, entry).await {
                    tracing::warn!(customer = %item.id, ?error, "could not revoke the sessions of changed credentials");
                    return Ok(());
                }
                tracing::info!(customer = %item.id, version = %changed.version, "credentials changed: earlier sessions revoked");
            }
        }
        store.advance_job(&job, batch.version).await?;
        if !batch.more {
            return Ok(());
        }
    }
}

/// At the signer: deletes the entries no valid token can meet any more.
async fn purge(state: &AppState) {
    for id in state.revocations().expired(unix_now()) {
        let Some(id) = ResourceId::parse(&id) else {
            continue;
        };
        let change = Change {
            target: Target::Delete(id.clone()),
            precondition: None,
            edits: Vec::new(),
        };
        match state.store().commit(COLLECTION, vec![change]).await {
            Ok(_) => state.notify_change(),
            // Another unit of the signer deleted it first, or the store is away: next round.
            Err(error) => tracing::debug!(%id, %error, "revocation not purged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, sid: &str, cv: Option<i64>) -> Claims {
        Claims {
            sub: sub.into(),
            login: "someone".into(),
            sid: sid.into(),
            iat: 0,
            exp: i64::MAX,
            cv,
        }
    }

    #[test]
    fn entries_end_one_session_or_older_credentials() {
        let revocations = Revocations::default();
        let entry = |customer: &str, sid: Option<&str>, before: Option<i64>| Entry {
            customer: customer.into(),
            sid: sid.map(str::to_owned),
            before,
            exp: 1,
        };
        assert!(!revocations.is_revoked(&claims("7", "a", Some(3))));
        revocations
            .write()
            .put("100", Some(entry("7", Some("a"), None)));
        assert!(revocations.is_revoked(&claims("7", "a", Some(3))));
        assert!(!revocations.is_revoked(&claims("7", "b", Some(3))));
        revocations
            .write()
            .put("101", Some(entry("7", None, Some(5))));
        revocations
            .write()
            .put("102", Some(entry("7", None, Some(4))));
        assert!(revocations.is_revoked(&claims("7", "b", Some(3))));
        assert!(revocations.is_revoked(&claims("7", "b", None)));
        assert!(!revocations.is_revoked(&claims("7", "b", Some(5))));
        assert!(!revocations.is_revoked(&claims("8", "b", Some(1))));
        // Entries go (purged after their exp): the greatest of the rest still counts.
        revocations.write().put("101", None);
        assert!(revocations.is_revoked(&claims("7", "b", Some(3))));
        assert!(!revocations.is_revoked(&claims("7", "b", Some(4))));
        revocations.write().put("102", None);
        revocations.write().put("100", None);
        assert!(!revocations.is_revoked(&claims("7", "a", Some(0))));
        assert!(revocations.is_empty());
        assert_eq!(revocations.expired(2), Vec::<String>::new());
    }
}
