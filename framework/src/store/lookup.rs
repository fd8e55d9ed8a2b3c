//! Declared lookups: "the orders of customer 12" without a scan. Each lookup field gets a
//! partial expression index on the aspect documents, so writes, copies and restores keep it
//! true without any bookkeeping of ours.

use super::{Backend, Error, Store};
use crate::model::LookupField;
use crate::version::ResourceId;

impl Store {
    /// Creates the index behind a lookup (idempotent; at start-up). Collection, aspect and
    /// field names are lower-case words checked by `model`, so they are safe in the statement.
    pub(crate) async fn ensure_lookup(
        &self,
        collection: &str,
        lookup: &LookupField,
    ) -> Result<(), Error> {
        let index = format!(
            "hs_lookup_{collection}_{}_{}",
            lookup.aspect.to_string().replace('.', "_"),
            lookup.field
        );
        let statement = format!(
            "CREATE INDEX IF NOT EXISTS {index} ON hs_aspect \
             (collection, aspect, {}, resource_id) WHERE deleted = 0",
            self.field_expression(&lookup.field)
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ids of the live resources whose lookup field holds `value`, in id order, after `after`
    /// (the previous page's last id), at most `limit`.
    pub async fn lookup(
        &self,
        collection: &str,
        lookup: &LookupField,
        value: &str,
        after: Option<&ResourceId>,
        limit: usize,
    ) -> Result<Vec<ResourceId>, Error> {
        let statement = format!(
            "SELECT resource_id FROM hs_aspect \
             WHERE collection = $1 AND aspect = $2 AND deleted = 0 AND {} = $3 \
               AND resource_id > $4 \
             ORDER BY resource_id LIMIT $5",
            self.field_expression(&lookup.field)
        );
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
            .bind(collection)
            .bind(lookup.aspect.to_string())
            .bind(value)
            .bind(after.map(ResourceId::as_str).unwrap_or(""))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|id| {
                ResourceId::parse(&id).ok_or_else(|| Error::Corrupt(format!("resource id {id:?}")))
            })
            .collect()
    }

    /// Ids of every live resource of `collection`, in id order, after `after`, at most
    /// `limit` (a public catalogue's listing).
    pub async fn list(
        &self,
        collection: &str,
        after: Option<&ResourceId>,
        limit: usize,
    ) -> Result<Vec<ResourceId>, Error> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT resource_id FROM hs_resource \
             WHERE collection = $1 AND deleted = 0 AND resource_id > $2 \
             ORDER BY resource_id LIMIT $3",
        )
        .bind(collection)
        .bind(after.map(ResourceId::as_str).unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|id| {
                ResourceId::parse(&id).ok_or_else(|| Error::Corrupt(format!("resource id {id:?}")))
            })
            .collect()
    }

    /// The SQL expression for a text field of an aspect document; the index and the query
    /// must spell it the same way for the index to be used.
    fn field_expression(&self, field: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("json_extract(body, '$.{field}')"),
            Backend::Postgres => format!("(body::jsonb ->> '{field}')"),
        }
    }
}
