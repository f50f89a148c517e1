//! Cursor pagination. Ids are UUIDv7, so ordering by id is ordering by creation time, stable
//! under concurrent inserts, and the cursor is just the last id seen (opaque to clients).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// `?limit=&cursor=` of a list request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageRequest {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// What is wrong with a page request; the api maps it to a 422/400 problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    Limit,
    #[error("cursor is not one this server issued")]
    Cursor,
}

impl PageRequest {
    /// The page size, validated.
    pub fn limit(&self) -> Result<u32, PageError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(PageError::Limit),
        }
    }

    /// The id after which the page starts.
    pub fn after(&self) -> Result<Option<Uuid>, PageError> {
        self.cursor.as_deref().map(decode).transpose()
    }

    /// Both, checked together; the row count to fetch is `limit + 1` (to learn whether more follow).
    pub fn parse(&self) -> Result<(u32, Option<Uuid>), PageError> {
        Ok((self.limit()?, self.after()?))
    }
}

/// A page of a list; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Absent (`null`) on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> Uuid) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode(id_of(last)))
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

fn encode(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode(cursor: &str) -> Result<Uuid, PageError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| PageError::Cursor)?;
    Uuid::from_slice(&bytes).map_err(|_| PageError::Cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_points_at_its_last_item() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_rows(ids.clone(), 3, |id| *id);
        assert_eq!(page.items.len(), 3);
        let request = PageRequest { limit: Some(3), cursor: page.next_cursor };
        assert_eq!(request.after(), Ok(Some(ids[2])));
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let page = Page::from_rows(vec![Uuid::now_v7()], 3, |id| *id);
        assert!(page.next_cursor.is_none());
    }

    #[test]
    fn a_forged_cursor_or_a_huge_limit_is_refused() {
        assert_eq!(PageRequest { limit: None, cursor: Some("!!".into()) }.after(), Err(PageError::Cursor));
        assert_eq!(PageRequest { limit: Some(1000), cursor: None }.limit(), Err(PageError::Limit));
        assert_eq!(PageRequest { limit: Some(0), cursor: None }.limit(), Err(PageError::Limit));
    }
}
