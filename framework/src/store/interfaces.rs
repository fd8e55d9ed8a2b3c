//! The run-time state of the SA's interface versions (`hs_interface`), kept in the SA's
//! database so every unit agrees and a restart keeps it; and which consumers poll which
//! version (`hs_consumer.interface_version`), so retiring one that is still polled is refused.

use super::{Error, Store, unix_now};

/// One version's stored state (`state` is `active`, `deprecated` or `retired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRow {
    pub version: u32,
    pub state: String,
    /// Unix seconds when it was deprecated (the `Deprecation` header's date).
    pub deprecated_at: Option<i64>,
    /// Unix seconds of the announced sunset (the `Sunset` header).
    pub sunset: Option<i64>,
    pub is_default: bool,
}

/// A consumer of an owned collection's feed and the interface version it last polled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConsumer {
    pub collection: String,
    pub consumer: String,
    pub interface_version: u32,
    /// Unix seconds of its last recorded poll.
    pub polled_at: i64,
}

/// `hs_interface` as read: version, state, deprecated_at, sunset, is_default.
type InterfaceTuple = (i64, String, Option<i64>, Option<i64>, i64);

impl Store {
    /// Every stored interface version row (versions without a row are active).
    pub async fn interface_rows(&self) -> Result<Vec<InterfaceRow>, Error> {
        let rows: Vec<InterfaceTuple> = sqlx::query_as(
            "SELECT version, state, deprecated_at, sunset, is_default FROM hs_interface \
             ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(version, state, deprecated_at, sunset, is_default)| {
                Some(InterfaceRow {
                    version: u32::try_from(version).ok()?,
                    state,
                    deprecated_at,
                    sunset,
                    is_default: is_default != 0,
                })
            })
            .collect())
    }

    /// Stores a version's state (and, when `make_default`, makes it the default of bare media
    /// types, taking the mark from any other version) in one transaction. A version that
    /// becomes deprecated keeps the date it first was, so `Deprecation` does not move.
    pub(crate) async fn set_interface(
        &self,
        version: u32,
        state: &str,
        sunset: Option<i64>,
        make_default: bool,
        by: &str,
    ) -> Result<(), Error> {
        let _turn = self.write_turn().await;
        let mut transaction = self.begin_write().await?;
        let now = unix_now();
        let previous: Option<(Option<i64>, i64)> =
            sqlx::query_as("SELECT deprecated_at, is_default FROM hs_interface WHERE version = $1")
                .bind(i64::from(version))
                .fetch_optional(&mut *transaction)
                .await?;
        let deprecated_at = match state {
            "deprecated" => Some(previous.and_then(|(at, _)| at).unwrap_or(now)),
            _ => None,
        };
        let keep_default = previous.is_some_and(|(_, is_default)| is_default != 0);
        if make_default {
            sqlx::query("UPDATE hs_interface SET is_default = 0")
                .execute(&mut *transaction)
                .await?;
        }
        sqlx::query(
            "INSERT INTO hs_interface (version, state, deprecated_at, sunset, is_default, changed_at, changed_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (version) DO UPDATE SET state = excluded.state, \
             deprecated_at = excluded.deprecated_at, sunset = excluded.sunset, \
             is_default = excluded.is_default, changed_at = excluded.changed_at, \
             changed_by = excluded.changed_by",
        )
        .bind(i64::from(version))
        .bind(state)
        .bind(deprecated_at)
        .bind(sunset)
        .bind(i64::from(make_default || keep_default))
        .bind(now)
        .bind(by)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The consumers of owned collections and the interface version each polls with (v1 for
    /// positions recorded before versions were tracked).
    pub(crate) async fn interface_consumers(&self) -> Result<Vec<InterfaceConsumer>, Error> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT collection, consumer, COALESCE(interface_version, 1), polled_at \
             FROM hs_consumer ORDER BY collection, consumer",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(collection, consumer, version, polled_at)| {
                Some(InterfaceConsumer {
                    collection,
                    consumer,
                    interface_version: u32::try_from(version).ok()?,
                    polled_at,
                })
            })
            .collect())
    }
}
