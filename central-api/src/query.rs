//! Helpers for list endpoints: paging parameters, pages, and `WHERE` clauses built from
//! optional filters with numbered parameters (never client text in SQL).

use std::fmt::Write as _;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{ApiResult, Validator};

/// Checks `limit` (1–200, default 50) and `offset` (≥ 0, default 0).
pub fn paging(limit: Option<i64>, offset: Option<i64>) -> ApiResult<(i64, i64)> {
    let mut v = Validator::new();
    let limit = page_size(&mut v, limit, 50, 200);
    let offset = offset.unwrap_or(0);
    v.range("query.offset", offset, 0, i64::from(i32::MAX));
    v.finish()?;
    Ok((limit, offset))
}

/// A page size: `default` when absent, otherwise checked to be 1..=`max` (`query.limit`).
pub fn page_size(v: &mut Validator, limit: Option<i64>, default: i64, max: i64) -> i64 {
    let limit = limit.unwrap_or(default);
    v.range("query.limit", limit, 1, max);
    limit
}

/// Turns `limit + 1` fetched rows into a page and the next offset.
pub fn page<T>(
    rows: Vec<Row>,
    limit: i64,
    offset: i64,
    from_row: impl Fn(&Row) -> ApiResult<T>,
) -> ApiResult<(Vec<T>, Option<i64>)> {
    let more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(from_row)
        .collect::<ApiResult<Vec<T>>>()?;
    Ok((items, more.then_some(offset + limit)))
}

/// SQL `WHERE` clauses with numbered parameters.
///
/// ```ignore
/// let mut f = Filter::default();
/// f.add("state = ANY($$)", states);
/// let sql = format!("SELECT .. FROM incident{} LIMIT ${}", f.sql(), f.param_count() + 1);
/// ```
#[derive(Debug, Default)]
pub struct Filter {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filter {
    /// Adds `clause`, where `$$` stands for the parameter `value`.
    pub fn add<T: ToSql + Sync + Send + 'static>(&mut self, clause: &str, value: T) {
        self.add_all(clause, vec![Box::new(value)]);
    }

    /// Adds `clause`, where each `$$` in turn stands for the next of `values`.
    pub fn add_all(&mut self, clause: &str, values: Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut sql = String::new();
        let mut pieces = clause.split("$$");
        sql.push_str(pieces.next().unwrap_or_default());
        for (piece, value) in pieces.zip(values) {
            self.params.push(value);
            let _ = write!(sql, "${}", self.params.len());
            sql.push_str(piece);
        }
        self.clauses.push(sql);
    }

    /// How many parameters the clauses use (the next one is `$count + 1`).
    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}
