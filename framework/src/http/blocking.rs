//! CPU-heavy request work (password hashing, business rules) runs off the async threads, a
//! few at a time: one Argon2 hash holds about 19 MiB, so letting every request hash at once
//! lets anyone with wrong passwords exhaust a unit's memory. Beyond the bound a request waits
//! its turn, up to a limit, then gets `503 busy` with `Retry-After`.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::ApiError;
use crate::codes;

/// How many pieces of blocking work run at once in one unit process.
pub const MAX_CONCURRENT: usize = 4;
/// How long a request waits for its turn before it is refused.
const MAX_WAIT: Duration = Duration::from_secs(10);

static TURNS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(MAX_CONCURRENT));

/// Runs `work` on the blocking pool once a turn is free (at most `MAX_CONCURRENT` at once).
pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let turn = tokio::time::timeout(MAX_WAIT, TURNS.acquire())
        .await
        .map_err(|_| {
            ApiError::unavailable(
                codes::BUSY,
                "the unit is busy with other requests' password checks; try again shortly",
            )
        })?
        .map_err(ApiError::internal)?;
    let outcome = tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal);
    drop(turn);
    outcome
}
