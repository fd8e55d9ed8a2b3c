//! Rolling upgrades: units of the previous release and of the new one share the SA's database
//! while the new one is rolled out, so documents are written in a form every running unit
//! reads. Each unit records the newest interface version it serves and renews a "still
//! running" mark every few seconds (`hs_unit`); documents are stored in the form of the oldest
//! newest version among the units seen lately ([`Store::stored_form`]) — an older version's
//! facade (`to_old`) turns a canonical document into it. Writes through a version above that
//! form are refused (`503 interface-upgrading`): what only the newer version knows could not
//! be stored. Once the last unit of the previous release is gone, the newest form is written;
//! older documents are upgraded when read ([`crate::Collection::upgrade`]), never migrated in
//! one blocking step.
//!
//! [`Store::stored_form`]: crate::store::Store::stored_form

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{ApiError, AppState};
use crate::codes;
use crate::interface::InterfaceVersion;

/// How often a unit renews its "still running" mark.
pub(super) const SEEN_EVERY: Duration = Duration::from_secs(2);
/// A unit not seen for this long is gone: its version no longer holds the stored form back.
/// Well above `SEEN_EVERY`, so a slow write of the mark does not flip the form under a unit
/// that still runs.
pub(super) const SEEN_WINDOW_SECS: u64 = 15;

impl AppState {
    /// The interface version whose form documents are written in now.
    pub fn stored_form(&self) -> InterfaceVersion {
        self.inner.stored_form.load(Ordering::Relaxed)
    }

    /// The shared cell holding [`AppState::stored_form`], for the batch jobs' writes.
    pub(crate) fn stored_form_cell(&self) -> std::sync::Arc<std::sync::atomic::AtomicU32> {
        std::sync::Arc::clone(&self.inner.stored_form)
    }

    /// Renews this unit's mark (when `renew`) and re-reads the stored form.
    pub(crate) async fn refresh_stored_form(&self, renew: bool) -> Result<(), crate::store::Error> {
        let store = self.store();
        if renew {
            store.unit_seen(&self.inner.unit.unit).await?;
        }
        let newest = self.inner.sa.newest_interface_version();
        let form = store
            .stored_form(self.inner.sa.name(), SEEN_WINDOW_SECS)
            .await?
            .map_or(newest, |oldest| oldest.clamp(1, newest));
        let before = self.inner.stored_form.swap(form, Ordering::Relaxed);
        if before != form {
            tracing::info!(
                from = before,
                to = form,
                "documents are now stored in the form of interface v{form}"
            );
        }
        Ok(())
    }

    /// Refuses a write through `version` while documents are stored in an older form; answers
    /// the form, which the write then stores in (read once: a switch between a check and the
    /// commit dropped v2-only fields from a write that answered 200).
    pub(super) fn require_stored_form(
        &self,
        version: InterfaceVersion,
    ) -> Result<InterfaceVersion, ApiError> {
        let form = self.stored_form();
        if version <= form {
            return Ok(form);
        }
        Err(ApiError::unavailable(
            codes::INTERFACE_UPGRADING,
            format!(
                "a unit serving interface versions up to v{form} still runs (a rolling upgrade): \
                 documents are stored as v{form}, which cannot hold what v{version} adds; write \
                 through v{form}, or again once every unit serves v{version}"
            ),
        ))
    }
}
