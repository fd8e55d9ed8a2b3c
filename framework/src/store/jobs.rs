//! How far each batch job got: the version of the last change it handled, per job, in the
//! SA's database, so any batch unit of the SA continues where another stopped.

use super::{Error, Store};
use crate::version::Version;

impl Store {
    /// The version up to which `job` handled its collection's changes (`0` at first).
    pub async fn job_position(&self, job: &str) -> Result<Version, Error> {
        let stored: Option<i64> = sqlx::query_scalar("SELECT version FROM hs_job WHERE job = $1")
            .bind(job)
            .fetch_optional(&self.pool)
            .await?;
        Ok(stored.and_then(Version::new).unwrap_or(Version::ZERO))
    }

    /// Records that `job` handled everything up to `version`; a position never moves back, so
    /// two batch units finishing out of order cannot undo each other's progress.
    pub async fn advance_job(&self, job: &str, version: Version) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO hs_job (job, version) VALUES ($1, $2) \
             ON CONFLICT (job) DO UPDATE SET version = excluded.version \
             WHERE hs_job.version < excluded.version",
        )
        .bind(job)
        .bind(version.get())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
