//! Batch units: the design's batch service units, which serve no user traffic and run the
//! reactions their SA declares ([`crate::ServiceArea::reacts_to`]).
//!
//! Each reaction reads its collection's changes (owned or copied) after the position its job
//! recorded in the SA's database, hands each changed resource to business code, and records
//! the version after each one. Any number of batch units may run: they share the position, and
//! a change handled twice (two units racing, or one killed before recording) must be harmless,
//! which the reaction makes so (a unique field: one invoice per order).

use std::time::Duration;

use tokio::sync::watch;

use crate::business::{Changed, Draft, Reaction, Refusal};
use std::sync::Arc;

use crate::business::Context;
use crate::model::Role;
use crate::model::ServiceArea;
use crate::store::Store;
use crate::version::Version;

/// Changed resources handled per round of one reaction.
const ROUND_SIZE: usize = 100;
/// How long a batch unit rests when no job found work, and after a failed round.
const IDLE_PAUSE: Duration = Duration::from_millis(300);

/// What batch jobs run on: the SA's store and declaration (not the HTTP edge: a batch unit's
/// work does not go through requests).
#[derive(Debug, Clone)]
pub(crate) struct Jobs {
    pub(crate) store: Store,
    pub(crate) sa: Arc<ServiceArea>,
    /// The interface version whose form documents are stored in (the unit's, kept current):
    /// a job's writes follow the same rule as a request's.
    pub(crate) stored_form: Arc<std::sync::atomic::AtomicU32>,
}

/// Runs every reaction of the unit's SA until `stop` turns true.
pub(crate) async fn run(jobs: Jobs, mut stop: watch::Receiver<bool>) {
    let reactions = jobs.sa.reactions().to_vec();
    tracing::info!(jobs = reactions.len(), "batch unit runs its jobs");
    loop {
        let mut busy = false;
        for reaction in &reactions {
            match round(&jobs, reaction).await {
                Ok(handled) => busy |= handled > 0,
                Err(error) => {
                    metrics::counter!("hiscale_job_failures_total", "job" => reaction.job.clone())
                        .increment(1);
                    tracing::warn!(job = %reaction.job, %error, "batch job failed; it tries again");
                }
            }
        }
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(IDLE_PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One round of a reaction: up to [`ROUND_SIZE`] changes after its recorded position.
pub(crate) async fn round(jobs: &Jobs, reaction: &Reaction) -> Result<usize, Refusal> {
    let store = &jobs.store;
    let Some(collection) = jobs.sa.collection(&reaction.collection) else {
        return Ok(0);
    };
    let after = store.job_position(&reaction.job).await?;
    // What the feed of this collection would show: an owner's committed versions, or a copy's
    // applied chunks.
    let until = match collection.role() {
        Role::Owner => store.horizon(collection.name()).await?,
        Role::Copy { .. } => store.cursor(collection.name()).await?,
    };
    if until <= after {
        return Ok(0);
    }
    let aspects: Vec<String> = collection
        .aspect_names()
        .iter()
        .map(ToString::to_string)
        .collect();
    let batch = store
        .read_changes(collection.name(), after, until, &aspects, ROUND_SIZE)
        .await?;
    for item in &batch.items {
        let now = store
            .read(collection.name(), &item.id)
            .await?
            .filter(|resource| !resource.deleted)
            .map(|resource| Draft::stored(collection.name(), &resource));
        let changed = Changed {
            id: item.id.clone(),
            version: item.version,
            now,
        };
        let context = Context::new(
            jobs.store.clone(),
            Arc::clone(&jobs.sa),
            None,
            jobs.stored_form.load(std::sync::atomic::Ordering::Relaxed),
        );
        (reaction.run)(context, changed).await?;
        record(store, reaction, item.version).await?;
    }
    record(store, reaction, batch.version).await?;
    Ok(batch.items.len())
}

async fn record(store: &Store, reaction: &Reaction, version: Version) -> Result<(), Refusal> {
    store.advance_job(&reaction.job, version).await?;
    metrics::gauge!("hiscale_job_position", "job" => reaction.job.clone())
        .set(version.get() as f64);
    Ok(())
}
